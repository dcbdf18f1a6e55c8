"""Images and CLIP-style alignment: image inputs, the towers, the symmetric InfoNCE loss, training
on the one loop, and a run used as an encoder of texts and images from the command line."""

import gzip
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from lmlab.clip.loss import symmetric_info_nce
from lmlab.errors import LmlabError
from lmlab.images.files import read_idx, read_images, read_labels, to_pixels
from lmlab.models import BUNDLED, DEFAULT_ENCODER, bundled_path

no_encoder = bundled_path(BUNDLED[DEFAULT_ENCODER]) is None
WORDS = ["apple", "car", "house"]  # class i: a bright square in a corner of its own


def pictures(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n grey 16x16 images of 3 classes (a bright 8x8 corner: top-left, top-right, bottom-left)
    with noise, and their labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, (n, 16, 16)).astype(np.uint8)
    for i, c in enumerate(y):
        r, k = (0, 0) if c == 0 else (0, 8) if c == 1 else (8, 0)
        x[i, r : r + 8, k : k + 8] += 180
    return x, y


# -- the loss ------------------------------------------------------------------------------


def test_info_nce_of_hand_made_vectors():
    v = torch.eye(2)  # image i and text i identical, orthogonal to the other pair
    # logits [[1, 0], [0, 1]] at scale 1: each row's loss is -log(e / (e + 1)), both directions
    assert symmetric_info_nce(v, v, torch.tensor(0.0)).item() == pytest.approx(
        math.log(1 + math.exp(-1)), abs=1e-6
    )
    # one group: both texts are positives of both images: -(log p11 + log p12) / 2 per row
    p = torch.tensor([math.e, 1.0]) / (math.e + 1)
    expected = -(p.log().sum() / 2).item()
    got = symmetric_info_nce(v, v, torch.tensor(0.0), torch.tensor([7, 7])).item()
    assert got == pytest.approx(expected, abs=1e-6)


def test_info_nce_is_clips_pseudocode_and_symmetric():
    g = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(5, 4, generator=g), dim=-1)
    text = F.normalize(torch.randn(5, 4, generator=g), dim=-1)
    scale = torch.tensor(math.log(10.0))
    logits = 10.0 * image @ text.T
    labels = torch.arange(5)
    reference = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert symmetric_info_nce(image, text, scale).item() == pytest.approx(reference.item(), 1e-6)
    assert symmetric_info_nce(text, image, scale).item() == pytest.approx(reference.item(), 1e-6)
    # groups that are all different are the diagonal
    distinct = symmetric_info_nce(image, text, scale, torch.tensor([4, 3, 2, 1, 0]))
    assert distinct.item() == pytest.approx(reference.item(), 1e-6)


def test_info_nce_is_lower_for_aligned_pairs():
    g = torch.Generator().manual_seed(1)
    image = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    shuffled = image[torch.randperm(8, generator=g)]
    scale = torch.tensor(math.log(20.0))
    assert symmetric_info_nce(image, image, scale) < symmetric_info_nce(image, shuffled, scale)


# -- image inputs ----------------------------------------------------------------------------


def test_idx_npy_and_folder_inputs_read_the_same_images(tmp_path):
    x, y = pictures(6)
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in x.shape)
    (tmp_path / "images.idx3-ubyte.gz").write_bytes(gzip.compress(header + x.tobytes()))
    labels = (0x801).to_bytes(4, "big") + len(y).to_bytes(4, "big") + y.astype(np.uint8).tobytes()
    (tmp_path / "labels.idx1-ubyte").write_bytes(labels)
    np.save(tmp_path / "images.npy", x)
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, image in enumerate(x):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    assert np.array_equal(read_idx(tmp_path / "images.idx3-ubyte.gz"), x)
    assert read_labels(tmp_path / "labels.idx1-ubyte") == [str(v) for v in y]
    assert np.array_equal(read_images(tmp_path / "images.npy")[0], x)
    from_folder, names = read_images(folder)
    assert names == [f"{i:02d}.png" for i in range(6)]
    assert np.array_equal(np.stack(from_folder), x)


def test_images_of_mixed_sizes_and_colours_are_resized_and_converted():
    grey, colour = np.full((10, 20), 200, np.uint8), np.zeros((32, 32, 3), np.uint8)
    colour[..., 0] = 255  # pure red: luma 0.299 * 255
    out = to_pixels([grey, colour], 16, 1)
    assert out.shape == (2, 1, 16, 16)
    assert (out[0] == 200).all() and (out[1] == 76).all()
    assert to_pixels([grey], 16, 3).shape == (1, 3, 16, 16)


def test_a_folder_with_another_file_or_a_broken_image_is_a_one_line_error(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(LmlabError, match=r"notes\.txt is not an image file"):
        read_images(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "b.png").write_bytes(b"\x89PNG but cut short")
    with pytest.raises(LmlabError, match=r"cannot read .*b\.png as an image") as e:
        read_images(tmp_path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("tower", ["cnn", "vit"])
def test_towers_map_images_to_their_dimension(tower):
    from lmlab.images import tower_classes

    model_class, config_class, presets = tower_classes(tower)
    model = model_class(config_class(image_size=16, **presets["tiny"])).eval()
    assert model(torch.zeros(3, 1, 16, 16)).shape == (3, model.dimension)


# -- training and the run as an encoder ------------------------------------------------------


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """A tiny CNN aligned with the frozen bundled MiniLM on the 3 classes of `pictures`."""
    if no_encoder:
        pytest.skip("no bundled encoder")
    from lmlab.training.clip import clip_config, train_clip

    out = tmp_path_factory.mktemp("clip") / "run"
    x, y = pictures(90)
    result = train_clip(x, [WORDS[c] for c in y], out, labels=True, freeze_text=True,
                        preset="tiny", valid_fraction=0.2,
                        config=clip_config(steps=40, batch_size=24, lr=5e-3, warmup=5,
                                           eval_every=40, log_every=1, device="cpu"),
                        progress=False)  # fmt: skip
    return out, result


@pytest.mark.slow
def test_a_few_steps_lower_the_loss_and_zero_shot_beats_chance(clip_run):
    import lmlab

    out, result = clip_run
    losses = [r["loss"] for r in result.history if "loss" in r and "valid_loss" not in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2
    run = json.loads((out / "lmlab.json").read_text())
    assert run["kind"] == "clip" and run["captions"]["classes"] == sorted(WORDS)
    enc = lmlab.load_encoder(out)
    x, y = pictures(60, seed=1)  # new images
    accuracy = (enc.zero_shot(x, WORDS) == y).mean()
    assert accuracy > 0.6  # chance is 1/3


@pytest.mark.slow
def test_the_run_embeds_image_paths_and_texts_into_one_space(clip_run, tmp_path):
    import lmlab

    out, _ = clip_run
    enc = lmlab.load_encoder(out)
    x, _ = pictures(3, seed=2)
    Image.fromarray(x[0]).save(tmp_path / "one.png")
    both = enc.encode([str(tmp_path / "one.png"), "a photo of a car."])
    assert both.shape == (2, enc.dimension)
    assert np.allclose(both[0], enc.encode_images(x[:1])[0], atol=1e-6)
    assert np.allclose(both[1], enc.encode("a photo of a car."), atol=1e-6)
    with pytest.raises(LmlabError, match=r"no such image file: .*gone\.png"):
        enc.encode([str(tmp_path / "gone.png")])


@pytest.mark.slow
def test_cli_embed_index_search_and_zero_shot_classify_on_an_image_column(
    clip_run, tmp_path, capsys, monkeypatch
):
    from lmlab.cli import main

    out, _ = clip_run
    x, y = pictures(30, seed=3)
    folder = tmp_path / "images"
    folder.mkdir()
    rows = ["image,label"]
    for i, (image, c) in enumerate(zip(x, y, strict=True)):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
        rows.append(f"{folder / f'{i:02d}.png'},{WORDS[c]}")
    table = tmp_path / "images.csv"
    table.write_text("\n".join(rows) + "\n")

    def cli(*args):
        with pytest.raises(SystemExit) as e:
            main(list(map(str, args)))
        return e.value.code, capsys.readouterr()

    code, got = cli("embed", folder, "--model", out, "--out", tmp_path / "e.npy")
    assert code == 0, got.err
    assert np.load(tmp_path / "e.npy").shape == (30, 128)
    assert cli("index", "build", table, "--column", "image", "--model", out,
               "--out", tmp_path / "index")[0] == 0  # fmt: skip
    code, got = cli("search", tmp_path / "index", "a photo of a house.", "-k", "5", "--json")
    hits = json.loads(got.out)
    assert sum(WORDS[y[int(h["id"]) - 1]] == "house" for h in hits) >= 4
    verbalizers = ",".join(f"{w}=a photo of a {w}." for w in WORDS)
    code, got = cli("classify", "fit", table, "--text-col", "image", "--label-col", "label",
                    "--method", "zero-shot", "--via", "cosine", "--encoder", out,
                    "--verbalizers", verbalizers, "--out", tmp_path / "clf")  # fmt: skip
    assert code == 0, got.err
    code, got = cli("classify", "predict", tmp_path / "clf", table, "--text-col", "image")
    lines = got.out.strip().splitlines()[1:]
    right = sum(line.split(",")[1] == line.split(",")[2] for line in lines)
    assert right / len(lines) > 0.6
    assert cli("map", table, "--column", "image", "--model", out, "--method", "pca",
               "--color-by", "label", "--out", tmp_path / "map.png")[0] == 0  # fmt: skip
    assert (tmp_path / "map.png").stat().st_size > 0


def test_cli_bad_inputs_are_one_line_errors(tmp_path, capsys):
    from lmlab.cli import main

    x, y = pictures(4)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "labels.txt").write_text("".join(f"{WORDS[c]}\n" for c in y))
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.fromarray(x[0]).save(folder / "a.png")
    (folder / "readme.md").write_text("hi")

    def error(*args):
        with pytest.raises(SystemExit) as e:
            main(["train", "clip", *map(str, args), "--out", str(tmp_path / "run"),
                  "--freeze-text", "--no-progress"])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
        return err

    assert "{label}" in error(tmp_path / "x.npy", tmp_path / "labels.txt", "--template", "a {x}")
    assert "{label}" in error(tmp_path / "x.npy", tmp_path / "labels.txt", "--template", "photo")
    assert "readme.md is not an image file" in error(folder, tmp_path / "labels.txt")
    assert "4 images but" in error(tmp_path / "x.npy", tmp_path / "three.txt")
    assert "unknown image encoder" in error(tmp_path / "x.npy", tmp_path / "labels.txt",
                                            "--labels", "--image-encoder", "resnet")  # fmt: skip
    assert not (tmp_path / "run").exists()
