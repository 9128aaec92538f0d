"""Method 3: what a classifier likes to see (Palacio et al., "What do Deep Networks Like to See?",
CVPR 2018, arXiv 1803.08337).

An image autoencoder is first trained to reconstruct images (stage 1); a copy of it is then tuned
through a *frozen* classifier (stage 2): the loss is the classifier's cross-entropy on the
reconstruction with the true labels, so the decoder learns to emit whatever signal that classifier
needs ("S2SNets"). Feeding the reconstructions tuned for classifier A to another classifier B (the
cross-classifier accuracy matrix) shows whether A lets in the signal B relies on; the normalised mutual
information (NMI) between images and reconstructions shows how much of the input survives.

Layout: :mod:`.autoencoder` (SegNet-style autoencoder, both training stages), :mod:`.nmi` (mutual
information, the joint-range binning), :mod:`.patches` (grey patches of natural photographs: the
pre-training data off the classifiers' domain), :mod:`.stats` (McNemar's exact test, the order, Kruskal-Wallis),
:mod:`.method` (:class:`InputSignal`, the one verb ``measure(images, labels)``).

Readings and deviations (each a parameter with this default; ``docs/methods.md`` section 3):

* autoencoder: SegNet's shape scaled to 28 x 28 (two pooling stages, two convolutions per stage, 28 k
  parameters instead of five stages and 29 M), the released code's 1x1 output convolution with no
  activation;
* stage 1 data: grey 28 x 28 patches of natural photographs (:func:`photo_patches`), never the
  classifiers' digits, as the paper pre-trains on YFCC100m and tests on ImageNet;
* stage 1 loss: mean squared error; optimiser (both stages): Adam, lr 1e-3; both stages stop at a
  plateau of a held-out loss (:func:`plateaued`); stage 2 keeps its best held-out state;
* stage 2: classifier frozen, encoder frozen and detached (released code), decoder tuned on the
  cross-entropy alone; ``tune="all"`` tunes the whole autoencoder;
* NMI: 256 levels over the joint range of original and reconstruction (no clipping), per image.
"""

from .._torch import frozen
from .autoencoder import (Checkpoint, FitResult, Schedule, SegNetAE, best_evaluation, build_autoencoder, classify,
                          finetune_through_classifier, fingerprint, plateaued, predict, pretrain_autoencoder,
                          reconstruct, tuned_parameters)
from .method import ROW_COLUMNS, InputSignal, SignalMeasurement
from .nmi import (MutualInformation, joint_range, mutual_information, nmi, nmi_noise_bias, out_of_range,
                  quantize)
from .patches import SIDES, photo_patches, to_grey
from .stats import ALPHA, SignalOrder, combine_orders, kruskal_wallis, mcnemar_exact, order_verdict, signal_order

__all__ = [
    "InputSignal",
    "SignalMeasurement",
    "ROW_COLUMNS",
    "SegNetAE",
    "FitResult",
    "Schedule",
    "build_autoencoder",
    "fingerprint",
    "frozen",
    "plateaued",
    "best_evaluation",
    "Checkpoint",
    "photo_patches",
    "to_grey",
    "SIDES",
    "pretrain_autoencoder",
    "finetune_through_classifier",
    "tuned_parameters",
    "reconstruct",
    "classify",
    "predict",
    "quantize",
    "joint_range",
    "out_of_range",
    "MutualInformation",
    "mutual_information",
    "nmi",
    "nmi_noise_bias",
    "ALPHA",
    "mcnemar_exact",
    "kruskal_wallis",
    "SignalOrder",
    "signal_order",
    "order_verdict",
    "combine_orders",
]
