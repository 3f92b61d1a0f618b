"""Omniglot on the real archives: counts, inversion, splits, rotations, and every kind of bad
input."""
import io
import os
import re
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import episodes.omniglot as om
from episodes.errors import DataError
from episodes.omniglot import load_omniglot, parse_split_line, prepare_omniglot, rotate
from episodes.store import Store


def _store(root):
    return Store(root / "omniglot" / "omniglot-28.h5")


def test_store_counts(omniglot_root):
    with _store(omniglot_root) as s:
        assert s.attrs["size"] == 28 and s.attrs["inverted"]
        bg, ev = s.part("background"), s.part("evaluation")
    assert bg.images.shape == (964 * 20, 1, 28, 28) and ev.images.shape == (659 * 20, 1, 28, 28)
    assert len(bg.images) + len(ev.images) == 32460
    assert len({n.split("/")[0] for n in bg.class_names}) == 30
    assert len({n.split("/")[0] for n in ev.class_names}) == 20
    for part in (bg, ev):
        np.testing.assert_array_equal(part.class_offsets, np.arange(len(part.class_names) + 1) * 20)
        assert part.class_names == sorted(part.class_names)
    assert not set(bg.class_names) & set(ev.class_names)


def test_images_are_inverted_strokes_high(omniglot_root):
    with _store(omniglot_root) as s:
        images = np.concatenate([s.part("background").images, s.part("evaluation").images])
    assert images.dtype == np.uint8 and images.max() == 255 and images.min() == 0
    ink = images.astype(np.float64) / 255
    assert 0.02 < ink.mean() < 0.2  # mostly background (0), a little ink
    assert np.median(images) == 0
    assert (images.reshape(len(images), -1).max(axis=1) > 128).all()  # every drawing has strokes


def test_images_match_pil_decoding_of_the_archive(omniglot_root, fewshot_data):
    """Oracle: decode a few archive entries independently and find them at the right place."""
    with _store(omniglot_root) as s:
        parts = {p: s.part(p) for p in ("background", "evaluation")}
    for part, class_idx, drawing in (("background", 0, 0), ("background", 963, 19),
                                     ("evaluation", 300, 7)):
        p = parts[part]
        name = p.class_names[class_idx]
        with zipfile.ZipFile(fewshot_data / "omniglot" / f"images_{part}.zip") as z:
            entries = sorted(n for n in z.namelist() if n.startswith(f"images_{part}/{name}/")
                             and n.endswith(".png"))
            assert len(entries) == 20
            with Image.open(io.BytesIO(z.read(entries[drawing]))) as im:
                assert im.size == (105, 105)
                want = 255 - np.asarray(im.convert("L").resize((28, 28), Image.LANCZOS))
        np.testing.assert_array_equal(p.images[p.class_offsets[class_idx] + drawing, 0], want)


def test_vinyals_splits(omniglot_root, fewshot_data):
    splits = {s: load_omniglot(s, omniglot_root) for s in ("train", "val", "test", "trainval")}
    assert {s: v.num_classes for s, v in splits.items()} == {"train": 4112, "val": 688,
                                                             "test": 1692, "trainval": 4800}
    for s, v in splits.items():
        lines = (fewshot_data / "omniglot" / "splits" / "vinyals" / f"{s}.txt").read_text().split()
        assert list(v.class_names) == lines
        assert (v.counts == 20).all() and v.data.shape == (20 * len(lines), 1, 28,
                                                           28) and v.data.dtype == torch.uint8
    chars = {s: {parse_split_line(n)[0] for n in v.class_names} for s, v in splits.items()}
    assert (len(chars["train"]), len(chars["val"]), len(chars["test"])) == (1028, 172, 423)
    assert not (chars["train"] & chars["val"]) and not (chars["train"] & chars["test"])
    assert not (chars["val"] & chars["test"])
    assert chars["train"] | chars["val"] == chars["trainval"]
    # trainval = train then val, same images
    tv, tr = splits["trainval"], splits["train"]
    assert torch.equal(tv.data[: len(tr.data)], tr.data)


def test_maml_splits_are_a_random_character_split_with_task_rotations(omniglot_root):
    splits = {s: load_omniglot(f"maml-{s}", omniglot_root)
              for s in ("train", "val", "test", "trainval")}
    names = {s: set(split.class_names) for s, split in splits.items()}
    assert {s: len(n) for s, n in names.items()} == {"train": 1100, "val": 100, "test": 423,
                                                     "trainval": 1200}
    assert not names["train"] & names["val"] and not names["train"] & names["test"] and not names[
        "val"] & names["test"]
    assert names["trainval"] == names["train"] | names["val"]
    with _store(omniglot_root) as s:
        everything = set(s.part("background").class_names) | set(s.part("evaluation").class_names)
    assert names["train"] | names["val"] | names["test"] == everything
    # drawn across both archives: the test characters come from many alphabets, most of them seen in
    # training
    test_alphabets = {n.split("/")[0] for n in names["test"]}
    train_alphabets = {n.split("/")[0] for n in names["train"]}
    assert len(test_alphabets) >= 40 and len(test_alphabets - train_alphabets) <= 2
    for split in splits.values():
        assert split.task_rotations == (0, 90, 180, 270) and split.counts.eq(20).all()
    background = load_omniglot("background", omniglot_root)
    first = background.class_names.index(splits["train"].class_names[0])
    # stored unrotated
    assert torch.equal(splits["train"].data[:20], background.data[20 * first:20 * first + 20])
    with pytest.raises(DataError, match="MAML split 'maml-train' fixes its own rotations"):
        load_omniglot("maml-train", omniglot_root, rotations=(0, 90))


def test_a_changed_maml_split_list_is_refused(omniglot_root, tmp_path, monkeypatch):
    import episodes.omniglot as omniglot
    for name in ("train", "val", "test", "trainval"):
        (tmp_path / f"{name}.txt").write_bytes(
            (omniglot.MAML_SPLIT_DIR / f"{name}.txt").read_bytes())
    with open(tmp_path / "test.txt", "a", encoding="utf-8") as f:
        f.write("Bengali/character01\n")
    monkeypatch.setattr(omniglot, "MAML_SPLIT_DIR", tmp_path)
    with pytest.raises(DataError, match="test.txt has md5 .* reinstall fewshot"):
        load_omniglot("maml-test", omniglot_root)


def test_rotation_matches_pil():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(9, 9), dtype=np.uint8)
    img[0, :3] = 255  # asymmetric marker
    for deg in (0, 90, 180, 270, 360, -90):
        want = np.asarray(Image.fromarray(img).rotate(deg))
        got = rotate(torch.from_numpy(img)[None, None], deg)[0, 0].numpy()
        np.testing.assert_array_equal(got, want)
    with pytest.raises(DataError, match="multiple of 90"):
        rotate(torch.zeros(1, 1, 3, 3), 45)


def test_vinyals_rotated_classes_are_pil_rotations(omniglot_root):
    val = load_omniglot("val", omniglot_root)
    index = {n: i for i, n in enumerate(val.class_names)}
    char = parse_split_line(val.class_names[0])[0]
    base = val.data[val.class_offsets[index[f"{char}/rot000"]] :][:20]
    for deg in (90, 180, 270):
        c = index[f"{char}/rot{deg:03d}"]
        got = val.data[val.class_offsets[c] : val.class_offsets[c + 1]]
        want = np.stack(
            [np.asarray(Image.fromarray(im[0].numpy()).rotate(deg))[None] for im in base])
        np.testing.assert_array_equal(got.numpy(), want)


def test_lake_splits_and_rotation_augmentation(omniglot_root):
    bg, ev = load_omniglot("background", omniglot_root), load_omniglot("evaluation", omniglot_root)
    assert (bg.num_classes, ev.num_classes) == (964, 659)
    aug = load_omniglot("evaluation", omniglot_root, rotations=(0, 90, 180, 270))
    assert aug.num_classes == 4 * 659 and len(aug.data) == 4 * len(ev.data)
    assert aug.class_names[:2] == [f"{ev.class_names[0]}/rot000", f"{ev.class_names[0]}/rot090"]
    assert torch.equal(aug.data[20:40], torch.rot90(ev.data[:20], 1, dims=(-2, -1)))
    assert torch.equal(aug.data[:20], ev.data[:20])
    with pytest.raises(DataError, match="fixes its own rotations"):
        load_omniglot("train", omniglot_root, rotations=(0, 90))
    with pytest.raises(DataError, match="multiples of 90"):
        load_omniglot("background", omniglot_root, rotations=(0, 45))
    with pytest.raises(DataError,
                       match="unknown omniglot split 'bogus'.*train, val, test, trainval, "
                             "maml-train, "
                             "maml-val, maml-test, maml-trainval, background, "
                             "evaluation"):
        load_omniglot("bogus", omniglot_root)


def test_parse_split_line():
    assert parse_split_line("Angelic/character01/rot090") == ("Angelic/character01", 90)
    for bad in ("Angelic/character01", "Angelic/character01/rot045", "Angelic/x/rot000"):
        with pytest.raises(DataError, match="bad split line"):
            parse_split_line(bad)


def test_missing_store_names_the_command(tmp_path):
    with pytest.raises(DataError, match=f"run `fewshot prepare omniglot --root {tmp_path}`"):
        load_omniglot("train", tmp_path)
    with pytest.raises(DataError, match=f"fewshot prepare omniglot --root {tmp_path} --size 32"):
        load_omniglot("train", tmp_path, size=32)


# ----------------------------------------------------------------------------- bad input
def _source(tmp_path, fewshot_data, **replace):
    """A --source folder linking the real files, with some replaced by the given bytes/paths."""
    src = tmp_path / "src"
    (src / "splits" / "vinyals").mkdir(parents=True)
    real = fewshot_data / "omniglot"
    for rel in ("images_background.zip",
                "images_evaluation.zip") + tuple(f"splits/vinyals/{s}.txt"
                                                 for s in om.VINYALS_SPLITS):
        key = rel.replace("/", "_").replace(".", "_")
        if key in replace:
            if replace[key] is not None:
                (src / rel).write_bytes(replace[key])
        else:
            os.symlink(real / rel, src / rel)
    return src


def _rewrite_zip(path, keep=lambda info: True, rename=lambda n: n, data=lambda n, b: b, extra=()):
    out = io.BytesIO()
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if keep(info):
                zout.writestr(rename(info.filename),
                              b"" if info.is_dir() else data(info.filename, zin.read(info)))
        for name in extra:
            zout.writestr(name, b"")
    return out.getvalue()


def _assert_fails_cleanly(tmp_path, src, match):
    root = tmp_path / "root"
    with pytest.raises(DataError, match=match) as info:
        prepare_omniglot(src, root, quiet=True)
    assert "\n" not in str(info.value)
    leftovers = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    assert leftovers == []


EVAL = "images_evaluation_zip"


def test_truncated_archive(tmp_path, fewshot_data):
    blob = (fewshot_data / "omniglot" / "images_evaluation.zip").read_bytes()
    _assert_fails_cleanly(tmp_path,
                          _source(tmp_path, fewshot_data, **{EVAL: blob[: len(blob) // 2]}),
                          "not a valid zip archive")


def test_missing_alphabet(tmp_path, fewshot_data):
    real = fewshot_data / "omniglot" / "images_evaluation.zip"
    with zipfile.ZipFile(real) as z:
        victim = sorted({n.split("/")[1] for n in z.namelist() if n.count("/") >= 2})[0]
    blob = _rewrite_zip(real, keep=lambda i: f"/{victim}/" not in i.filename)
    _assert_fails_cleanly(tmp_path, _source(tmp_path, fewshot_data, **{EVAL: blob}),
                          "found 19 alphabets.*expected 20 "
                          "/ 659")


@pytest.mark.slow
def test_wrong_layout(tmp_path, fewshot_data):
    blob = _rewrite_zip(fewshot_data / "omniglot" / "images_evaluation.zip",
                        rename=lambda n: "omniglot/" + n)
    _assert_fails_cleanly(tmp_path, _source(tmp_path, fewshot_data, **{EVAL: blob}), "wrong layout")
    blob = _rewrite_zip(fewshot_data / "omniglot" / "images_evaluation.zip",
                        extra=["images_evaluation/Angelic/notes.txt"])
    _assert_fails_cleanly(tmp_path / "b", _source(tmp_path / "b", fewshot_data, **{EVAL: blob}),
                          "unexpected entry")


def test_empty_class_folder(tmp_path, fewshot_data):
    real = fewshot_data / "omniglot" / "images_evaluation.zip"
    with zipfile.ZipFile(real) as z:
        victim = sorted(n for n in z.namelist() if n.endswith(".png"))[0].rsplit("/", 1)[0] + "/"
        assert victim in z.namelist()  # the archive lists class folders as entries
    blob = _rewrite_zip(real, keep=lambda i: not (i.filename.startswith(victim) and not i.is_dir()))
    _assert_fails_cleanly(tmp_path, _source(tmp_path, fewshot_data, **{EVAL: blob}), "is empty")


def test_unreadable_png_fails_without_leftovers(tmp_path, fewshot_data):
    real = fewshot_data / "omniglot" / "images_background.zip"
    with zipfile.ZipFile(real) as z:
        victim = sorted(n for n in z.namelist() if n.endswith(".png"))[5]
    blob = _rewrite_zip(real, data=lambda n, b: b"this is not a png" if n == victim else b)
    src = _source(tmp_path, fewshot_data, images_background_zip=blob)
    _assert_fails_cleanly(tmp_path, src, f"'{victim.split('/', 1)[1]}' is not a readable PNG")


def test_failure_mid_way_leaves_no_store_and_no_temp(tmp_path, fewshot_data, monkeypatch):
    """Make decoding fail part-way through (after the temp store exists) and check nothing
    remains."""
    root = tmp_path / "root"
    seen = {"calls": 0, "temp_files": []}
    real_decode = om.decode_png

    def failing(data, size, what="image"):
        seen["calls"] += 1
        if seen["calls"] == 500:
            seen["temp_files"] = [p.name for p in (root / "omniglot").iterdir()]
            raise DataError("simulated failure")
        return real_decode(data, size, what)

    monkeypatch.setattr(om, "decode_png", failing)
    with pytest.raises(DataError, match="simulated failure"):
        prepare_omniglot(fewshot_data / "omniglot", root, quiet=True)
    # it really was mid-way
    assert len(seen["temp_files"]) == 1 and seen["temp_files"][0].endswith(".tmp")
    assert list((root / "omniglot").iterdir()) == []


def test_split_list_checks(tmp_path, fewshot_data):
    lines = (fewshot_data / "omniglot" / "splits" / "vinyals" / "val.txt").read_bytes()
    _assert_fails_cleanly(tmp_path / "a", _source(tmp_path / "a", fewshot_data,
                                                  splits_vinyals_val_txt=lines
                                                  + b"X/character01/rot000\n"),
                          "split list .*val.txt has md5")
    _assert_fails_cleanly(tmp_path / "b",
                          _source(tmp_path / "b", fewshot_data, splits_vinyals_test_txt=None),
                          "test.txt not found")
    _assert_fails_cleanly(tmp_path / "c", tmp_path / "nowhere", "is not a folder")
    empty = tmp_path / "d" / "src"
    shutil.copytree(_source(tmp_path / "d0", fewshot_data) / "splits", empty / "splits",
                    symlinks=True)
    _assert_fails_cleanly(tmp_path / "d", empty, "neither .*images_background.zip nor the folder")


@pytest.mark.slow
def test_extracted_folder_source_gives_the_same_store(tmp_path, fewshot_data, omniglot_root):
    src = _source(tmp_path, fewshot_data, **{EVAL: None})
    with zipfile.ZipFile(fewshot_data / "omniglot" / "images_evaluation.zip") as z:
        z.extractall(src)
    out = prepare_omniglot(src, tmp_path / "root", quiet=True)
    with Store(out) as got, _store(omniglot_root) as want:
        for part in ("background", "evaluation"):
            np.testing.assert_array_equal(got.part(part).images, want.part(part).images)
            assert got.part(part).class_names == want.part(part).class_names


def test_existing_store_is_kept_unless_forced(tmp_path, fewshot_data):
    path = tmp_path / "omniglot" / "omniglot-28.h5"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"placeholder")
    assert prepare_omniglot(tmp_path / "does-not-matter", tmp_path, quiet=True) == path
    assert path.read_bytes() == b"placeholder"
    with pytest.raises(DataError, match="image size must be an integer"):
        prepare_omniglot(fewshot_data / "omniglot", tmp_path, size=0)


# ----------------------------------------------------------------------------- unreadable members
# (issue 14)
def _tiny_background_zip(member_method=zipfile.ZIP_DEFLATED) -> tuple[bytes, str]:
    """A small well-laid-out background archive (not complete: the bad member is found before
    counting)."""
    out = io.BytesIO()
    png = io.BytesIO()
    Image.new("1", (105, 105), 1).save(png, format="PNG")
    with zipfile.ZipFile(out, "w", member_method) as z:
        for i in range(3):
            z.writestr(f"images_background/Alpha/character01/0{i}.png", png.getvalue())
    return out.getvalue(), "images_background/Alpha/character01/01.png"


@pytest.mark.parametrize("patch,message", [
    ({"encrypted": True},
     "member '{member}' is encrypted (password-protected), which fewshot cannot read: use the "
     "official unencrypted archive, or extract it yourself and pass the "
     "folder holding "
     "images_background/ as --source"),
    ({"method": 9},
     "member '{member}' uses zip compression method 9 (deflate64), which this Python cannot "
     "decompress "
     "(it reads stored, deflate, bzip2, lzma): use the official archive, or extract "
     "it with another "
     "tool and pass the folder holding images_background/ as --source"),
    ({"method": 93}, "member '{member}' uses zip compression method 93 (zstandard), "
                     "which this Python cannot decompress"),
])
def test_unreadable_zip_member_is_refused_before_decoding(tmp_path, fewshot_data, monkeypatch,
                                                          patch, message):
    from tests.episodes.image_fixtures import patch_zip_member

    blob, member = _tiny_background_zip()
    src = _source(tmp_path, fewshot_data,
                  images_background_zip=patch_zip_member(blob, member, **patch))
    monkeypatch.setattr(om, "decode_png", lambda *a,
                        **k: pytest.fail("decoded before the archive was checked"))
    _assert_fails_cleanly(tmp_path, src,
                          re.escape(f"{src / 'images_background.zip'}: "
                                    + message.format(member=member)))


def test_decompression_bomb_in_the_archive_fails_cleanly(tmp_path, fewshot_data):
    from tests.episodes.image_fixtures import bomb_png

    real = fewshot_data / "omniglot" / "images_background.zip"
    with zipfile.ZipFile(real) as z:
        victim = sorted(n for n in z.namelist() if n.endswith(".png"))[3]
    blob = _rewrite_zip(real, data=lambda n, b: bomb_png(30000, 30000) if n == victim else b)
    src = _source(tmp_path, fewshot_data, images_background_zip=blob)
    _assert_fails_cleanly(tmp_path, src, re.escape(
        f"{src / 'images_background.zip'}: '{victim.split('/', 1)[1]}' is a decompression bomb "
        "(900,000,000 pixels, "
        "over Pillow's limit of 178,956,970): the archive is corrupt or was tampered with: "
        "use the official Omniglot archive"))


# ----------------------------------------------------------------------------- store integrity
# (issue 14)
def _damaged_copy(omniglot_root, tmp_path):
    """A copy of the real store with one bit flipped in the middle of the background images."""
    import h5py

    dest = tmp_path / "root" / "omniglot" / "omniglot-28.h5"
    dest.parent.mkdir(parents=True)
    shutil.copyfile(omniglot_root / "omniglot" / "omniglot-28.h5", dest)
    with h5py.File(dest, "r") as f:
        ds = f["background"]["images"]
        middle = ds.id.get_offset() + ds.id.get_storage_size() // 2
    with open(dest, "r+b") as fh:
        fh.seek(middle)
        byte = fh.read(1)[0]
        fh.seek(middle)
        fh.write(bytes([byte ^ 0x01]))
    return dest


@pytest.mark.parametrize("split", ["train", "background", "trainval"])
def test_store_with_flipped_image_bytes_is_refused(omniglot_root, tmp_path, split):
    dest = _damaged_copy(omniglot_root, tmp_path)
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        load_omniglot(split, root)
    msg = str(info.value)
    assert msg.startswith(f"store {dest} entry 'background' fails its sha256 check (")
    assert msg.endswith(
        f": the file is damaged; run `fewshot prepare omniglot --root {root} --force` to rebuild "
        "it")
    assert load_omniglot("evaluation", root).num_classes == 659  # the undamaged part still loads


def test_store_without_checksums_names_the_rebuild_command(tmp_path):
    import h5py

    path = tmp_path / "omniglot" / "omniglot-28.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:  # what fewshot wrote before stores carried checksums
        f.attrs["format_version"] = 1
    with pytest.raises(DataError) as info:
        load_omniglot("train", tmp_path)
    assert str(info.value) == (
        f"store {path} was written by an older fewshot (format 1, no content checksum), so its "
        "images cannot be verified: run `fewshot prepare omniglot --root "
        f"{tmp_path} --force` "
        "to rebuild it")
