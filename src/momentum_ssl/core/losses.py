"""Every pure loss function in one place. Each computes its formula for the arguments given;
symmetrisation over views and stop-gradients belong to the methods."""

from .methods.barlow_twins import barlow_twins_loss
from .methods.byol import byol_loss
from .methods.dino import dino_center, dino_loss
from .methods.mocov2 import info_nce
from .methods.mocov3 import moco_v3_loss
from .methods.simclr import nt_xent
from .methods.simsiam import negative_cosine
from .methods.unigrad import unigrad_loss
from .methods.vicreg import vicreg_loss
from .methods.xmoco import xmoco_cross_consistency, xmoco_negative_uniformity
from .momentum import residual_momentum_loss

__all__ = ["barlow_twins_loss", "byol_loss", "dino_center", "dino_loss", "info_nce", "moco_v3_loss", "negative_cosine",
           "nt_xent", "residual_momentum_loss", "unigrad_loss", "vicreg_loss",
           "xmoco_cross_consistency", "xmoco_negative_uniformity"]
