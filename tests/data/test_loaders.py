import dataclasses

import numpy as np
import pytest
import torch

from conftest import make_params, write_idx
from momentum_ssl.config import params_from_dict, to_dict
from momentum_ssl.data.convert import convert, read_meta
from momentum_ssl.data.datasets import load_source
from momentum_ssl.data.loaders import (EvalLoader, TwoViewLoader, eval_batches, eval_loader,
                                       train_loader, torchvision_two_view_loader)

N = 100  # images 0..99, image i a constant 2*i: any crop of it still says which image it was

STILL = {"jitter_p": 0.0, "grayscale_p": 0.0, "solarize_p": [0.0, 0.0], "blur_p": [0.0, 0.0]}


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("numbered")
    root = tmp / "raw"
    root.mkdir()
    images = np.repeat(2 * np.arange(N, dtype=np.uint8), 28 * 28).reshape(N, 28, 28)
    for split in ("train", "t10k"):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", (np.arange(N) * 7) % 10)
    params = make_params(tmp, data={"root": str(root)}, loader={"batch_size": 16},
                         augment={"size": 20})
    convert(params)
    return params


def image_ids(batch: torch.Tensor, meta: dict) -> np.ndarray:
    """Undo normalisation and read back which numbered image each element shows."""
    mean, std = torch.tensor(meta["mean"]).view(1, 3, 1, 1), torch.tensor(meta["std"]).view(
        1, 3, 1, 1)
    pixels = (batch * std + mean) * 255
    assert torch.allclose(pixels, pixels[:, :1, :1, :1].expand_as(pixels), atol=1e-3)
    return np.rint(pixels[:, 0, 0, 0].numpy() / 2).astype(int)


def make_params_like(params, **sections):
    data = to_dict(params)
    for name, values in sections.items():
        data[name].update(values)
    return params_from_dict(data)


def test_views_and_label_come_from_the_same_image(numbered):
    params = make_params_like(numbered, augment=STILL)
    meta = read_meta(f"{params.data.out_dir}/fashion_mnist")
    loader = train_loader(params)
    assert len(loader) == N // 16  # drop_last
    seen = []
    for view1, view2, labels in loader:
        assert view1.shape == view2.shape == (16, 3, 20, 20) and labels.shape == (16,)
        ids = image_ids(view1, meta)
        np.testing.assert_array_equal(ids, image_ids(view2, meta))
        np.testing.assert_array_equal(labels.numpy(), (ids * 7) % 10)
        seen.extend(ids)
    assert len(set(seen)) == len(seen) == 96  # an epoch visits distinct images


def test_the_two_views_differ(tmp_path, fake_fashion):
    params = make_params(tmp_path, data={"root": str(fake_fashion)}, loader={"batch_size": 20})
    convert(params)
    view1, view2, _ = next(iter(train_loader(params)))
    assert (view1 - view2).abs().mean() > 0.1
    assert not torch.equal(view1[0], view1[1])


def batches(loader) -> list[torch.Tensor]:
    return [torch.cat([v1.flatten(1), v2.flatten(1), y[:, None].float()], 1) for v1, v2, y in
            loader]


def test_batches_are_reproducible_for_a_seed(numbered):
    a, b = train_loader(numbered), train_loader(numbered)
    epoch0_a, epoch0_b = batches(a), batches(b)
    for x, y in zip(epoch0_a, epoch0_b):
        torch.testing.assert_close(x, y)
    epoch1_a, epoch1_b = batches(a), batches(b)
    for x, y in zip(epoch1_a, epoch1_b):
        torch.testing.assert_close(x, y)
    assert not torch.equal(epoch0_a[0], epoch1_a[0])  # a new epoch, new order and views
    other = train_loader(dataclasses.replace(numbered, seed=1))
    assert not torch.equal(batches(other)[0], epoch0_a[0])


def test_more_workers_than_this_machine_has_cores_train_the_same_batches(numbered):
    """A GPU profile's num_workers on a small machine: capped at numba's thread count instead
    of numba's "number of threads must be between 1 and N", and the batches do not change."""
    many = make_params_like(numbered, loader={"num_workers": 512})
    for x, y in zip(batches(train_loader(numbered)), batches(train_loader(many))):
        assert torch.equal(x, y)
    assert len(list(eval_loader(many, "test"))) == len(list(eval_loader(numbered, "test")))


def test_eval_loader_reads_every_image_in_order(numbered):
    meta = read_meta(f"{numbered.data.out_dir}/fashion_mnist")
    ids, labels = [], []
    for images, y in eval_loader(numbered, "test"):
        assert images.shape[1:] == (3, 20, 20)
        ids.extend(image_ids(images, meta))
        labels.extend(y.numpy())
    assert ids == list(range(N))
    assert labels == list((np.arange(N) * 7) % 10)


def test_raw_training_batches_are_ffcvs_bit_for_bit(tmp_path, fake_fashion, monkeypatch):
    # raw images are batched in the training thread, in FFCV's order: the same two views and
    # labels, epoch after epoch, as FFCV's loader thread gives
    from momentum_ssl.data import loaders

    params = make_params(tmp_path, data={"root": str(fake_fashion)}, loader={"batch_size": 16},
                         augment={"size": 20})
    convert(params)
    fast = train_loader(params)
    assert fast.raw is not None and fast.loader is None
    monkeypatch.setattr(loaders.RawImages, "open", classmethod(lambda cls, *a: None))
    slow = train_loader(params)
    assert slow.loader is not None
    assert len(fast) == len(slow) > 1
    for epoch in (0, 1, 3):
        fast.set_epoch(epoch)
        slow.set_epoch(epoch)
        pairs = list(zip(fast, slow))
        assert len(pairs) == len(slow)
        for ours, theirs in pairs:
            for a, b in zip(ours, theirs):
                assert torch.equal(a, b.reshape(a.shape))
    # without set_epoch the next iteration is the next epoch, in both
    assert all(torch.equal(a[0], b[0]) for a, b in zip(fast, slow))


def test_raw_eval_batches_are_the_eval_loaders_bit_for_bit(tmp_path, fake_fashion):
    # extract reads raw datasets straight from the file: the same images and labels, in the
    # same batches, as through FFCV
    params = make_params(tmp_path, data={"root": str(fake_fashion)}, loader={"batch_size": 16},
                         augment={"size": 20})
    convert(params)
    ours, theirs = list(eval_batches(params, "test")), list(eval_loader(params, "test"))
    assert len(ours) == len(theirs) > 1
    for (x, y), (fx, fy) in zip(ours, theirs):
        assert torch.equal(x, fx) and x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(y.reshape(-1), fy.reshape(-1))


def test_eval_loader_keeps_pixels_at_native_size(tmp_path, fake_fashion):
    params = make_params(tmp_path, data={"root": str(fake_fashion)})
    folder = convert(params)
    meta = read_meta(folder)
    images, labels = next(iter(EvalLoader(folder, 28, params.loader, "test")))
    source = load_source(params.data, "test")
    raw = images * torch.tensor(meta["std"]).view(1, 3, 1, 1) + torch.tensor(
        meta["mean"]).view(1, 3, 1, 1)
    expected = torch.from_numpy(source[0][0]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(raw[0], expected, atol=1e-5, rtol=0)
    assert labels[:30].tolist() == source.labels[:30].tolist()


def test_torchvision_loader_pairs_views_with_labels(numbered):
    params = make_params_like(numbered, augment=STILL, loader={"num_workers": 1})
    meta = read_meta(f"{params.data.out_dir}/fashion_mnist")
    view1, view2, labels = next(iter(torchvision_two_view_loader(params)))
    assert view1.shape == (16, 3, 20, 20)
    ids = image_ids(view1, meta)
    np.testing.assert_array_equal(ids, image_ids(view2, meta))
    np.testing.assert_array_equal(labels.numpy(), (ids * 7) % 10)


def test_loaders_say_when_the_dataset_is_not_converted(tmp_path):
    params = make_params(tmp_path)
    with pytest.raises(FileNotFoundError, match="run python -m momentum_ssl convert"):
        TwoViewLoader(tmp_path / "nowhere", params.augment, params.loader, 0)


def test_stopping_early_stops_the_prefetch_thread(numbered):
    import threading
    import time

    from ffcv.loader.epoch_iterator import EpochIterator

    def stop_after(loader, batches: int, wait: float) -> None:
        for i, _ in enumerate(loader):
            if i + 1 == batches:
                time.sleep(wait)  # let the prefetch thread fill its queue
                break

    # 6 batches, 3 ahead: stopping after 3 leaves the queue full and the thread blocked
    # putting its end-of-epoch marker; stopping after 1 leaves it mid-epoch
    for loader, batches in ((train_loader(numbered), 3), (train_loader(numbered), 1),
                            (eval_loader(numbered, "test"), 1)):
        worker = threading.Thread(target=stop_after, args=(loader, batches, 1.0))
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "stopping the loader hung"
        assert not [t for t in threading.enumerate() if isinstance(t, EpochIterator)]


def test_eval_of_varying_sizes_reads_resize_256_then_centre_crop_224(tmp_path):
    """ImageFolder evaluation sees what every reference's does: the centre 224/256 of the
    shorter side (Resize(256) + CenterCrop(224) at 224 px), not the whole centre square."""
    from PIL import Image
    from torchvision.transforms import v2

    root = tmp_path / "folder"
    for split in ("train", "test"):
        for c in range(2):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            yy, xx = np.mgrid[0:64, 0:96]  # landscape, 96 x 64, a smooth ramp per channel
            image = np.stack([xx * 255 // 96, yy * 255 // 64, np.full_like(xx, 99 * c)], -1)
            Image.fromarray(image.astype(np.uint8)).save(folder / "a.png")
    params = make_params(tmp_path, data={"dataset": "imagefolder", "root": str(root)},
                         augment={"size": 28})
    convert(params)
    images, _ = next(iter(eval_loader(params, "test")))
    meta = read_meta(tmp_path / "beton" / "imagefolder")
    mean, std = torch.tensor(meta["mean"]).view(3, 1, 1), torch.tensor(meta["std"]).view(3, 1, 1)
    got = images[0] * std + mean
    source = torch.from_numpy(np.asarray(Image.open(root / "test" / "class0" / "a.png"))
                              ).permute(2, 0, 1).float() / 255
    reference = v2.CenterCrop(28)(v2.Resize(32, antialias=True)(source))  # 28 * 256 / 224 = 32
    whole_square = v2.Resize(28, antialias=True)(v2.CenterCrop(64)(source))  # the old reading
    assert got.shape == reference.shape == (3, 28, 28)
    error, old_error = ((got - x)[:2].abs().mean() for x in (reference, whole_square))
    assert error < 0.01 and old_error > 3 * error, (error, old_error)


def with_local_crops(params, crops=3):
    """``params`` as a DINO run trains with them when its recipe asks for ``crops`` local
    crops of 8 px (only DINO takes local crops)."""
    from momentum_ssl.config import RunSpec, resolve

    data = to_dict(params)
    data["recipes"]["dino"] = {"augment": {"local_crops": crops, "local_size": 8}}
    return resolve(params_from_dict(data), RunSpec("dino", "full"))


def test_local_crops_come_from_the_same_image_and_leave_the_global_views_alone(numbered):
    two = make_params_like(numbered, augment=STILL)
    multi = with_local_crops(two)
    meta = read_meta(f"{multi.data.out_dir}/fashion_mnist")
    for plain, batch in zip(train_loader(two), train_loader(multi)):
        assert len(batch) == 2 + 3 + 1
        *views, labels = batch
        assert [v.shape for v in views] == [(16, 3, 20, 20)] * 2 + [(16, 3, 8, 8)] * 3
        ids = image_ids(views[0], meta)
        for view in views[1:]:
            np.testing.assert_array_equal(image_ids(view, meta), ids)
        np.testing.assert_array_equal(labels.numpy(), (ids * 7) % 10)
        # the global views draw from their own streams: the same bits as without local crops
        assert torch.equal(plain[0], views[0]) and torch.equal(plain[1], views[1])
        assert torch.equal(plain[2], labels)


def test_local_crops_are_seeded_differ_and_the_raw_path_is_ffcvs(tmp_path, fake_fashion,
                                                                  monkeypatch):
    from momentum_ssl.data import loaders

    params = with_local_crops(make_params(tmp_path, data={"root": str(fake_fashion)},
                                          loader={"batch_size": 16}, augment={"size": 20}), 2)
    convert(params)
    fast = train_loader(params)
    again = train_loader(params)
    monkeypatch.setattr(loaders.RawImages, "open", classmethod(lambda cls, *a: None))
    slow = train_loader(params)
    assert fast.raw is not None and slow.loader is not None
    for epoch in (0, 2):
        for loader in (fast, again, slow):
            loader.set_epoch(epoch)
        for ours, same, theirs in zip(fast, again, slow):
            assert len(ours) == len(theirs) == 2 + 2 + 1
            for a, b, c in zip(ours, same, theirs):
                assert torch.equal(a, b) and torch.equal(a, c.reshape(a.shape))
            local1, local2 = ours[2], ours[3]
            assert local1.shape == (16, 3, 8, 8) and (local1 - local2).abs().mean() > 0.1
    other = train_loader(dataclasses.replace(params, seed=1))
    assert not torch.equal(next(iter(other))[2], next(iter(fast))[2])


def test_the_gpu_pipelines_allocate_every_buffer_after_todevice_on_the_device():
    """On a GPU each op after FFCV's ToDevice must allocate on the device: an allocation
    without one is on the CPU, and the batch goes back to the host (ToTorchImage did so)."""
    from ffcv.pipeline.state import State

    from momentum_ssl.data.loaders import _image_ops, _label_ops

    cuda = torch.device("cuda", 0)  # a device object only: nothing here starts CUDA
    decoded = {"image": State(True, torch.device("cpu"), (20, 24, 3), np.dtype("uint8")),
               "label": State(True, torch.device("cpu"), (1,), np.dtype("int64"))}
    for field, ops in (("image", _image_ops(cuda)), ("label", _label_ops(cuda)[1:])):
        state = decoded[field]
        for op in ops:
            state, allocation = op.declare_state_and_memory(state)
            if state.device.type == "cuda":
                assert allocation is None or allocation.device == cuda, (field, op)
        assert state.device == cuda, field
    assert list(state.shape) == []  # the labels, squeezed


def test_a_jpeg_imagefolder_through_the_gpu_paths_ops_gives_the_cpus_batches(tmp_path,
                                                                            monkeypatch):
    """The GPU path's pipelines (ToDevice included, here to the CPU) over JPEGs of varying
    size yield the CPU path's batches, training views and evaluation images alike."""
    from PIL import Image

    from momentum_ssl.data import loaders

    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(2):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i, (h, w) in enumerate([(40, 56), (48, 36), (44, 44), (60, 40)]):
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    folder / f"{i}.jpg", quality=90)
    params = make_params(tmp_path, data={"dataset": "imagefolder", "root": str(root),
                                         "jpeg_above": 0},
                         loader={"batch_size": 4}, augment={"size": 16})
    convert(params)

    def read() -> list[torch.Tensor]:
        views = [t.clone() for batch in train_loader(params) for t in batch]
        return views + [t.clone() for batch in eval_loader(params, "test") for t in batch]

    cpu = read()
    shipped = []
    monkeypatch.setattr(loaders, "_ships", lambda device: shipped.append(device) or True)
    gpu_path = read()
    assert shipped and len(gpu_path) == len(cpu) > 0
    for a, b in zip(gpu_path, cpu):
        assert torch.equal(a, b)
