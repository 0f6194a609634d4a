"""MoCo v2+'s queues (methods/mocov2.py), and XMoCo's use of them (methods/xmoco.py): one
K-key queue per view taking that view's N keys a step, view 1's queries against view 2's key
and queue and the reverse, as solo-learn's mocov2plus (solo/methods/mocov2plus.py)."""

import pytest
import torch
import torch.nn.functional as F

from momentum_ssl.core.methods import Branch, build_method
from momentum_ssl.core.methods.mocov2 import MoCoV2Config, info_nce
from momentum_ssl.core.methods.xmoco import XMoCoConfig, _off_diagonal, xmoco_negative_uniformity

N, D, K = 4, 8, 12  # three steps fill a queue
CONFIGS = {"mocov2": MoCoV2Config, "xmoco": XMoCoConfig}


def method(name, **settings):
    torch.manual_seed(0)
    return build_method(name, CONFIGS[name](proj_out=D, queue_size=K, **settings))


def branches(step):
    """Student and teacher branches of both views; only z is read."""
    g = torch.Generator().manual_seed(step)
    s1, s2, t1, t2 = (torch.randn(N, D, generator=g) for _ in range(4))
    return Branch(s1, s1), Branch(s2, s2), Branch(t1, t1), Branch(t2, t2)


@pytest.mark.parametrize("name", CONFIGS)
def test_each_view_has_its_own_queue_of_its_keys(name):
    m = method(name)
    initial = m.queue.clone()
    assert initial.shape == (2, K, D)
    torch.testing.assert_close(initial.norm(dim=2), torch.ones(2, K))
    keys = []  # keys[step][view]: the teacher's normalised projections
    for step in range(4):
        s1, s2, t1, t2 = branches(step)
        m.loss(s1, s2, t1, t2)
        keys.append([F.normalize(t.z, dim=1) for t in (t1, t2)])
        if step == 1:  # two steps in: the first 2N slots, the rest still the initial keys
            for view in (0, 1):
                torch.testing.assert_close(m.queue[view, :2 * N], torch.cat(
                    [keys[0][view], keys[1][view]]))
                torch.testing.assert_close(m.queue[view, 2 * N:], initial[view, 2 * N:])
    # the fourth step replaced the oldest keys, the first step's: N keys a step per view
    for view in (0, 1):
        torch.testing.assert_close(m.queue[view], torch.cat(
            [keys[3][view], keys[1][view], keys[2][view]]))
    assert int(m.queue_ptr) == N


@pytest.mark.parametrize("name", CONFIGS)
def test_view_1_queries_meet_view_2_keys_and_queue(name):
    t = 0.2
    # XMoCo with its regularisers off is MoCo v2+'s contrast
    m = method(name, **({"cc_weight": 0.0, "uniform_weight": 0.0} if name == "xmoco" else {}))
    m.loss(*branches(0))  # the queues now differ from each other in their first N keys
    s1, s2, t1, t2 = branches(1)
    queue = m.queue.clone()
    k1, k2 = F.normalize(t1.z, dim=1), F.normalize(t2.z, dim=1)
    loss, _ = m.loss(s1, s2, t1, t2)
    expected = (info_nce(s1.z, k2, queue[1], t) + info_nce(s2.z, k1, queue[0], t)) / 2
    torch.testing.assert_close(loss, expected)
    swapped = (info_nce(s1.z, k2, queue[0], t) + info_nce(s2.z, k1, queue[1], t)) / 2
    assert not torch.allclose(loss, swapped)  # the pairing is visible in the loss


def test_xmocos_uniformity_takes_the_key_views_queue_and_in_batch_keys():
    t = 0.2
    m = method("xmoco", cc_weight=0.0)
    m.loss(*branches(0))
    s1, s2, t1, t2 = branches(1)
    queue = m.queue.clone()
    k1, k2 = F.normalize(t1.z, dim=1), F.normalize(t2.z, dim=1)
    _, logs = m.loss(s1, s2, t1, t2)

    def negatives(q, k, past):  # (N, K + N - 1)
        q = F.normalize(q, dim=1)
        return torch.cat([q @ past.T, _off_diagonal(q @ k.T)], dim=1) / t

    expected = (xmoco_negative_uniformity(negatives(s1.z, k2, queue[1]))
                + xmoco_negative_uniformity(negatives(s2.z, k1, queue[0]))) / 2
    torch.testing.assert_close(logs["negative_uniformity"], expected)


def test_the_queue_must_hold_whole_steps_of_one_views_keys():
    m = method("mocov2")
    with pytest.raises(ValueError, match=r"queue \(12 keys per view\) must be a multiple of the "
                                         r"keys each view enqueues per step \(5 = batch 5 x 1"):
        m.enqueue(torch.randn(5, D), torch.randn(5, D))


@pytest.mark.parametrize("name", ["mocov2", "xmoco"])
def test_the_queue_pointer_lives_on_the_host_and_is_read_once_after_a_resume(name, monkeypatch):
    """On a mocked device ("meta": any host read of a device value raises) the queue takes its
    keys step after step; after load_state_dict (a resume) its pointer is read once, then kept
    on the host again, and the checkpointed buffer stays right throughout."""
    m = method(name)
    for step in range(2):
        m.loss(*branches(step))
    assert int(m.queue_ptr) == 2 * N
    resumed = method(name)
    resumed.load_state_dict(m.state_dict())
    reads = []
    real = torch.Tensor.__int__
    monkeypatch.setattr(torch.Tensor, "__int__", lambda t: reads.append(1) or real(t))
    for step in range(2, 5):
        resumed.loss(*branches(step))
    assert len(reads) == 1 and int(resumed.queue_ptr) == (5 * N) % K
    monkeypatch.undo()
    meta = method(name).to("meta")
    for step in range(3):
        meta.loss(*(Branch(*(t.to("meta") if t is not None else None for t in (b.y, b.z, b.p)))
                    for b in branches(step)))
    assert meta.queue_ptr.device.type == "meta"


def test_the_off_diagonal_by_strides_is_the_masks_to_the_bit():
    s = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    masked = s[~torch.eye(6, dtype=torch.bool)].view(6, 5)
    assert torch.equal(_off_diagonal(s), masked)
    g = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    a, = torch.autograd.grad(_off_diagonal(s), s, g)
    b, = torch.autograd.grad(masked, s, g)
    assert torch.equal(a, b)
