import numpy as np
import pytest
import torch

from purebench.data import DATASETS
from purebench.errors import PurebenchError
from purebench.eval.runner import select_indices


def test_cifar10_subset_is_real_and_aligned(data_root):
    data = DATASETS.build("cifar10", root=str(data_root))
    assert len(data) == 1017 and "verified subset" in data.source
    x, y = data.load(range(10))
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    # Known first labels of the official test batch (cat, ship, ship, airplane, frog, ...).
    assert y.tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_cifar10_train_and_cifar100_subsets(data_root):
    train = DATASETS.build("cifar10", root=str(data_root), split="train")
    assert len(train) == 1102 and train.load([0, 1, 2])[1].tolist() == [6, 9, 9]
    c100 = DATASETS.build("cifar100", root=str(data_root))
    assert c100.num_classes == 100 and c100.load(range(5))[1].tolist() == [49, 33, 72, 51, 71]


def test_official_batch_layout_is_preferred(tmp_path, data_root):
    import pickle

    with np.load(data_root / "cifar10-subsets" / "test_batch_first1017.npz") as npz:
        data, labels = npz["data"][:20], npz["labels"][:20]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": labels.tolist()}, f)
    dataset = DATASETS.build("cifar10", root=str(tmp_path))
    assert len(dataset) == 20 and "test_batch" in dataset.source
    assert dataset.load([0])[1].item() == 3


def test_missing_data_root_says_what_to_do(tmp_path):
    with pytest.raises(PurebenchError, match=r"No cifar10 test data.*dataset.root"):
        DATASETS.build("cifar10", root=str(tmp_path / "nowhere"))


def test_corrupt_subset_is_detected(tmp_path, data_root):
    (tmp_path / "cifar10-subsets").mkdir()
    (tmp_path / "cifar10-subsets" / "test_batch_first1017.npz").write_bytes(b"not an npz")
    with pytest.raises(PurebenchError, match="md5"):
        DATASETS.build("cifar10", root=str(tmp_path))


def test_subset_selection_is_deterministic():
    data = DATASETS.build("synthetic", size=100)
    assert select_indices(data, 5, "first", 0) == [0, 1, 2, 3, 4]
    sample = select_indices(data, 10, "random", 3)
    assert sample == select_indices(data, 10, "random", 3) and sample != select_indices(data, 10, "random", 4)
    with pytest.raises(PurebenchError, match="only 100 images"):
        select_indices(data, 101, "first", 0)
    with pytest.raises(PurebenchError, match="positive"):
        select_indices(data, 0, "first", 0)


def test_image_folder_datasets_resize_and_crop(tmp_path):
    from PIL import Image

    for cls in ("n01", "n02"):
        (tmp_path / "imagenette2-320" / "val" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (48, 40), color=(10 * i, 100, 200)).save(
                tmp_path / "imagenette2-320" / "val" / cls / f"{i}.png"
            )
    data = DATASETS.build("imagenette", root=str(tmp_path), resize=36, crop=32)
    x, y = data.load([0, 3])
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 1] and data.num_classes == 2
    assert x.min() >= 0 and x.max() <= 1
    with pytest.raises(PurebenchError, match="No image folder for imagenet"):
        DATASETS.build("imagenet", root=str(tmp_path))


def test_class_names_come_from_the_dataset_metadata(data_root):
    cifar10 = DATASETS.build("cifar10", root=str(data_root))
    assert cifar10.class_names[:3] == ["airplane", "automobile", "bird"] and len(cifar10.class_names) == 10
    assert DATASETS.build("cifar100", root=str(data_root)).class_names[:2] == ["apple", "aquarium_fish"]
    assert DATASETS.build("synthetic", size=4).class_names == [str(k) for k in range(10)]  # no metadata: labels
