"""The model families paintbridge loads, by the names diffusers' ``infer_diffusers_model_type``
gives them, and what each one's files look like."""

from __future__ import annotations

from paintbridge.plugin.params import WireEnum


class Arch(WireEnum):
    """The architectures we load: diffusers' ``infer_diffusers_model_type`` names."""

    V1 = "v1"
    INPAINTING = "inpainting"
    XL_BASE = "xl_base"
    XL_INPAINT = "xl_inpaint"

    @property
    def inpainting(self) -> bool:
        """A 9-channel UNet: it runs every job kind through its inpaint pipeline."""
        return self in (Arch.INPAINTING, Arch.XL_INPAINT)

    @property
    def xl(self) -> bool:
        return self in (Arch.XL_BASE, Arch.XL_INPAINT)


#: the cross-attention width of each architecture's published UNet
ARCH_CROSS_DIM = {Arch.V1: 768, Arch.INPAINTING: 768, Arch.XL_BASE: 2048, Arch.XL_INPAINT: 2048}
