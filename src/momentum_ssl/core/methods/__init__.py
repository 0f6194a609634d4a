"""The ten methods, one file each; ``METHODS`` maps a name to its class."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .barlow_twins import BarlowTwins, BarlowTwinsConfig
from .base import Branch, Method, validate_config
from .byol import BYOL, BYOLConfig
from .dino import DINO, DINOConfig
from .mocov2 import MoCoV2, MoCoV2Config
from .mocov3 import MoCoV3, MoCoV3Config
from .simclr import SimCLR, SimCLRConfig
from .simsiam import SimSiam, SimSiamConfig
from .unigrad import UniGrad, UniGradConfig
from .vicreg import VICReg, VICRegConfig
from .xmoco import XMoCo, XMoCoConfig

METHODS: dict[str, type[Method]] = {m.name: m for m in (
    MoCoV2, MoCoV3, BYOL, SimCLR, SimSiam, BarlowTwins, VICReg, UniGrad, XMoCo, DINO)}


@dataclass(frozen=True)
class MethodsConfig:
    """Section ``methods``: each method's settings; a method left out keeps its defaults."""

    mocov2: MoCoV2Config = MoCoV2Config()
    mocov3: MoCoV3Config = MoCoV3Config()
    byol: BYOLConfig = BYOLConfig()
    simclr: SimCLRConfig = SimCLRConfig()
    simsiam: SimSiamConfig = SimSiamConfig()
    barlow_twins: BarlowTwinsConfig = BarlowTwinsConfig()
    vicreg: VICRegConfig = VICRegConfig()
    unigrad: UniGradConfig = UniGradConfig()
    xmoco: XMoCoConfig = XMoCoConfig()
    dino: DINOConfig = DINOConfig()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            try:
                validate_config(getattr(self, f.name))
            except ValueError as err:
                raise ValueError(f"{f.name}.{err}") from None


def build_method(name: str, cfg=None) -> Method:
    """A method by name, with its config (its defaults when None)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    cls = METHODS[name]
    return cls(cfg if cfg is not None else cls.Config())


__all__ = ["Branch", "METHODS", "Method", "MethodsConfig", "build_method"]
