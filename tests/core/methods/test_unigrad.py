"""UniGrad's method (methods/unigrad.py) beyond its pure loss (test_losses.py): the moving
average F of the teacher's outputs."""

import torch


def test_unigrads_moving_average_of_f_stays_fp32_under_bf16_autocast():
    """Autocast runs matrix products in bf16 whatever the inputs' dtype; F's batch statistics
    are computed outside it (the GPU path trains under bf16 autocast; the CPU's does too here)."""
    from momentum_ssl.core.methods import build_method

    g = torch.Generator().manual_seed(0)
    u1, u2 = (torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1)
              for _ in range(2))
    plain, autocast = build_method("unigrad"), build_method("unigrad")
    for method in (plain, autocast):
        method.F = torch.zeros(32, 32)
    plain.update_F(u1, u2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast.update_F(u1, u2)
    assert autocast.F.dtype == torch.float32
    torch.testing.assert_close(autocast.F, plain.F, rtol=0, atol=0)
    torch.testing.assert_close(plain.F, (u1.T @ u1 + u2.T @ u2) / 128)
