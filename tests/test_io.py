import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from genrestore._checks import InputError
from genrestore.io import (convert_channels, list_images, quantize, read_image, tiled_apply, write_image)


def _rand_u8(h, w, c, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_lossless_roundtrip_8bit(tmp_path, suffix, channels):
    a = _rand_u8(9, 13, channels)
    if suffix == ".webp" and channels == 4:
        a[:, :, 3] |= 1  # lossless WebP may rewrite the colour of fully transparent pixels
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    p = tmp_path / f"a{suffix}"
    if suffix == ".webp":
        from genrestore.io import atomic_write_bytes
        import cv2
        arr = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        arr = arr[:, :, ::-1] if channels == 3 else arr[:, :, [2, 1, 0, 3]] if channels == 4 else arr
        ok, buf = cv2.imencode(".webp", arr, [cv2.IMWRITE_WEBP_QUALITY, 101])  # >100 is lossless
        atomic_write_bytes(p, buf.tobytes())
        if channels == 1:  # WebP stores grey as RGB
            y = read_image(p, "gray")
            assert torch.allclose(y, x, atol=1 / 255)
            return
    else:
        write_image(p, x)
    y = read_image(p)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.equal(y, x)


def test_pillow_reads_what_we_write(tmp_path):
    """Independent reference: Pillow decodes our PNG to the same pixels, alpha included."""
    a = _rand_u8(7, 5, 4, seed=1)
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    write_image(tmp_path / "a.png", x)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), a)


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png_and_tiff_keep_precision(tmp_path, channels):
    a = np.random.default_rng(2).integers(0, 65536, (6, 8, channels), dtype=np.uint16)
    x = torch.from_numpy(a.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    for name in ("a.png", "a.tif"):
        write_image(tmp_path / name, x, bits=16)
        y = read_image(tmp_path / name)
        assert torch.allclose(y, x, atol=0.5 / 65535)
        assert not torch.allclose(y, quantize(x), atol=0.1 / 255)  # not rounded to 8 bits


def test_jpeg_read_matches_pillow(tmp_path):
    a = _rand_u8(16, 24, 3, seed=3)
    Image.fromarray(a).save(tmp_path / "a.jpg", quality=90)
    ref = np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB")).astype(np.float32) / 255
    y = read_image(tmp_path / "a.jpg")[0].permute(1, 2, 0).numpy()
    assert np.abs(y - ref).max() <= 2 / 255  # both libjpeg; decoders may differ by a level


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_matches_pillow_transpose(tmp_path, orientation, suffix):
    from PIL import ImageOps

    a = _rand_u8(6, 10, 3, seed=4)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    kw = {"quality": 100} if suffix == ".jpg" else {"lossless": True} if suffix == ".webp" else {}
    im.save(tmp_path / f"a{suffix}", exif=exif.tobytes(), **kw)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / f"a{suffix}")).convert("RGB")).astype(int)
    y = (read_image(tmp_path / f"a{suffix}")[0].permute(1, 2, 0).numpy() * 255).round().astype(int)
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() <= (3 if suffix == ".jpg" else 0)  # decoders may differ slightly on JPEG


@pytest.mark.parametrize("where", ["none", "before-pixels", "after-pixels"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_png_orientation_without_decoding_twice(tmp_path, orientation, where, monkeypatch):
    """Pillow's getexif of a PNG decodes every pixel (an eXIf chunk may follow them), which read_image
    did for every PNG before OpenCV decoded it again. A PNG whose chunk headers show no metadata
    after the pixels (nearly all) is now not decoded by Pillow; one with such chunks still is. The
    orientation is Pillow's exif_transpose's in every case."""
    from PIL import ImageOps, PngImagePlugin

    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes().removeprefix(b"Exif\x00\x00")  # a PNG's eXIf starts at the TIFF header
    if where == "none":
        Image.fromarray(_rand_u8(6, 10, 3, seed=8)).save(tmp_path / "o.png")
        path = tmp_path / "o.png"
    else:
        path = _png_with_chunk(tmp_path, "o.png", b"eXIf", payload, after_pixels=where == "after-pixels")
    ref = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    decoded = []
    real_load = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda im: decoded.append(im) or real_load(im))
    y = (read_image(path)[0].permute(1, 2, 0).numpy() * 255).round().astype(int)
    assert y.shape == ref.shape and np.abs(y - ref).max() == 0
    assert (decoded != []) == (where == "after-pixels")
    if where != "none" and orientation in (6, 8):
        assert y.shape[:2] == (10, 6)  # turned


def test_png_is_complete_reads_chunk_headers_to_iend(tmp_path):
    """A PNG cut at any byte before its IEND chunk's header ends is incomplete; the whole file and
    one cut only inside IEND's CRC are complete; a file that is not a PNG is not."""
    from genrestore.io import png_is_complete

    Image.fromarray(_rand_u8(20, 30, 3, seed=6)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    for n in sorted({0, 7, 8, 16, 33, 40, len(data) // 2, len(data) - 13, len(data) - 12, len(data) - 5,
                     len(data) - 4, len(data) - 1, len(data)}):
        (tmp_path / "cut.png").write_bytes(data[:n])
        assert png_is_complete(tmp_path / "cut.png") == (n >= len(data) - 4), n
    Image.fromarray(_rand_u8(4, 4, 3, seed=7)).save(tmp_path / "b.jpg")
    assert not png_is_complete(tmp_path / "b.jpg")


def test_cmyk_has_no_alpha(tmp_path):
    Image.new("CMYK", (5, 4), (10, 20, 30, 0)).save(tmp_path / "c.tif")
    assert read_image(tmp_path / "c.tif").shape == (1, 3, 4, 5)


def test_convert_channels():
    rgba = torch.rand(1, 4, 3, 3)
    assert convert_channels(rgba, "rgb").shape[1] == 3
    g = convert_channels(rgba, "gray")
    expected = 0.299 * rgba[:, 0] + 0.587 * rgba[:, 1] + 0.114 * rgba[:, 2]
    assert torch.allclose(g[:, 0], expected, atol=1e-6)
    assert torch.equal(convert_channels(g, "rgba")[:, 3], torch.ones(1, 3, 3))


def test_atomic_write_leaves_no_temp_and_normal_mode(tmp_path):
    write_image(tmp_path / "x.png", torch.rand(1, 3, 4, 4))
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
    mode = stat.S_IMODE(os.stat(tmp_path / "x.png").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_atomic_write_of_a_longest_legal_name(tmp_path):
    """A 255-byte file name (the usual NAME_MAX), ASCII or with multi-byte characters cut
    mid-way, is written: the temporary name beside it must stay within the limit too."""
    for name in ("x" * 251 + ".png", "x" + "\u00e9" * 125 + ".png"):  # the second is cut inside an é
        assert len(name.encode()) == 255
        write_image(tmp_path / name, torch.rand(1, 3, 4, 4))
        assert (tmp_path / name).is_file()
    assert len(list(tmp_path.iterdir())) == 2


def test_write_refuses_out_of_range_and_jpeg_alpha(tmp_path):
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        write_image(tmp_path / "x.png", torch.full((1, 3, 2, 2), 1.5))
    with pytest.raises(InputError, match="alpha"):
        write_image(tmp_path / "x.jpg", torch.rand(1, 4, 2, 2))
    assert not list(tmp_path.iterdir())


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot decode"):
        read_image(tmp_path / "bad.png")


def test_list_images_folders_globs_files(tmp_path):
    for n in ("b.png", "a.jpg", "c.txt"):
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"")
    assert [p.name for p in list_images([tmp_path])] == ["a.jpg", "b.png"]
    assert [p.name for p in list_images([str(tmp_path / "**" / "*.png")])] == ["b.png", "d.png"]
    assert [p.name for p in list_images([tmp_path / "b.png", tmp_path])] == ["b.png", "a.jpg"]
    with pytest.raises(InputError, match="not an image"):
        list_images([tmp_path / "c.txt"])
    with pytest.raises(InputError, match="no such file"):
        list_images([tmp_path / "nope*.png"])


# ---------------------------------------------------------------------------- tiling

def test_tiled_identity_and_per_pixel_exact():
    x = torch.rand(2, 3, 67, 91, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tiled_apply(lambda t: t, x, tile=32, pad=4, blend=6), x)
    f = lambda t: torch.where(t > 0.5, t * t, 1 - t) * 3 + 0.125  # noqa: E731  (IEEE-exact ops)
    assert torch.equal(tiled_apply(f, x, tile=24, pad=2, blend=3), f(x))
    # torch's vectorized sigmoid and its scalar tail loop differ by an ulp depending on where a
    # row ends, so a transcendental operator is reproduced to float precision, not bit for bit
    s = lambda t: torch.sigmoid(3 * t - 1)  # noqa: E731
    assert (tiled_apply(s, x, tile=24, pad=2, blend=3) - s(x)).abs().max() <= 1.2e-7


def test_tiled_conv3x3_within_1e6_when_pad_covers_support():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 70, 53, generator=g)
    w = torch.randn(4, 3, 3, 3, generator=g)
    conv = lambda t: torch.nn.functional.conv2d(t, w, padding=1)  # noqa: E731
    y = tiled_apply(conv, x, tile=20, pad=1, blend=4)
    assert (y - conv(x)).abs().max() <= 1e-6
    # without the discarded margin, the tile borders differ: the check above can fail
    y_bad = tiled_apply(conv, x, tile=20, pad=0, blend=4)
    assert (y_bad - conv(x)).abs().max() > 1e-3


def test_tiled_with_scale_and_constant_output():
    x = torch.full((1, 3, 40, 30), 0.25)
    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=4, mode="nearest")  # noqa: E731
    y = tiled_apply(up, x, tile=16, pad=2, blend=2, scale=4)
    assert y.shape == (1, 3, 160, 120)
    assert (y - 0.25).abs().max() <= 1e-7


def test_tiled_rejects_bad_geometry():
    with pytest.raises(InputError):
        tiled_apply(lambda t: t, torch.rand(1, 3, 8, 8), tile=8, pad=2, blend=4)


def test_float_tiff_outside_unit_range_is_refused(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "f.tif"), np.full((4, 4), 2.0, np.float32))
    with pytest.raises(InputError, match="outside"):
        read_image(tmp_path / "f.tif")
    cv2.imwrite(str(tmp_path / "ok.tif"), np.full((4, 4), 0.25, np.float32))
    assert torch.equal(read_image(tmp_path / "ok.tif"), torch.full((1, 1, 4, 4), 0.25))


def test_truncated_png_error_carries_the_decoder_message_and_nothing_else_reaches_stderr(tmp_path, capfd):
    """Before the fix OpenCV's libpng printed 'libpng error: PNG input buffer is incomplete' on
    file descriptor 2 beside the CLI's one-line error; now that text is part of the InputError."""
    write_image(tmp_path / "a.png", torch.rand(1, 3, 100, 100, generator=torch.Generator().manual_seed(0)))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    capfd.readouterr()
    with pytest.raises(InputError, match=r"t\.png: cannot decode as an image \(libpng error: .*\)"):
        read_image(tmp_path / "t.png")
    assert torch.equal(read_image(tmp_path / "a.png"), read_image(tmp_path / "a.png"))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_reads_from_threads_leave_stderr_alone(tmp_path):
    """The decoder-message capture of read_image runs in the main thread only: concurrent
    redirections of file descriptor 2 could leave it pointing at a deleted file."""
    from concurrent.futures import ThreadPoolExecutor

    write_image(tmp_path / "a.png", torch.rand(1, 3, 8, 8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    before = os.fstat(2)

    def read(p):
        try:
            return read_image(p).shape
        except InputError:
            return None

    with ThreadPoolExecutor(4) as pool:
        shapes = list(pool.map(read, [tmp_path / "a.png", tmp_path / "bad.png"] * 20))
    assert shapes[0] == (1, 3, 8, 8) and shapes[1] is None
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)


def test_read_json_object_names_the_file_for_each_way_it_can_be_wrong(tmp_path):
    from genrestore.io import read_json_object

    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json_object(good) == {"a": [1, 2]}
    for name, text, kind in (("cut.json", '{"a": [1,', "JSONDecodeError"), ("list.json", "[1]", "a JSON list"),
                             ("bytes.json", b"\xff\xfe", "UnicodeDecodeError")):
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(InputError, match=f"{name}: not a sidecar \\({kind}\\)"):
            read_json_object(path, "a sidecar")
    with pytest.raises(InputError, match="missing.json: not a sidecar \\(FileNotFoundError\\)"):
        read_json_object(tmp_path / "missing.json", "a sidecar")


def test_tile_grid_fewest_smallest_tiles_that_cover_with_overlap():
    from genrestore.io import _tile_grid

    assert _tile_grid(512, 256, 48, 8) == ([0, 152, 304], 208)  # 3 tiles of 208 px, not of 256
    assert _tile_grid(200, 256, 48) == ([0], 200)
    for size in range(1, 300):
        for tile, overlap, multiple in ((64, 20, 8), (40, 9, 1), (33, 32, 1), (96, 48, 16), (64, 48, 2), (56, 49, 8)):
            starts, side = _tile_grid(size, tile, overlap, multiple)
            if size <= tile:
                assert (starts, side) == ([0], size)
                continue
            assert side <= tile and side % multiple == 0 and side < size
            assert starts[0] == 0 and starts[-1] + side == size  # covers the axis exactly
            assert all(b - a <= side - overlap for a, b in zip(starts, starts[1:]))  # enough overlap
            aligned = size % multiple == 0 and tile // multiple > -(-overlap // multiple)
            # the overlap the grid is laid out with: rounded up to the multiple when aligned
            ov = -(-overlap // multiple) * multiple if aligned else overlap
            if aligned:  # at the whole image's phase (pixel-unshuffle)
                assert all(s % multiple == 0 for s in starts)
            # as many tiles as full-size tiles at stride tile - ov would need
            assert len(starts) == -(-(size - tile) // (tile - ov)) + 1
            # no smaller multiple would do with this many tiles
            assert (side - multiple) * len(starts) - (len(starts) - 1) * ov < size


def test_tiled_uneven_tiles_match_untiled_conv_and_count_fewer_pixels():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 100, 81, generator=g)
    w = torch.randn(2, 3, 5, 5, generator=g)
    seen = []

    def conv(t):
        seen.append(t.shape[-2:])
        return torch.nn.functional.conv2d(t, w, padding=2)

    y = tiled_apply(conv, x, tile=48, pad=2, blend=4, multiple=8)
    assert (y - torch.nn.functional.conv2d(x, w, padding=2)).abs().max() <= 1e-5
    assert set(seen) == {(40, 48)} and len(seen) == 6  # 3 x 2 tiles, 40 px high instead of 48


def test_tiled_with_scale_drops_pad_times_scale_output_pixels():
    """A x4 operator whose receptive field is one input pixel (nearest x4, then a 9x9 conv: 4
    output px = 1 input px) with pad=1: every interior tile edge must lose pad * scale = 4 output
    rows and columns, and the tiled result equals the untiled one."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, 37, 29, generator=g)
    w = torch.randn(3, 2, 9, 9, generator=g)

    def fn(t):
        return torch.nn.functional.conv2d(torch.nn.functional.interpolate(t, scale_factor=4, mode="nearest"),
                                          w, padding=4)

    ref = fn(x)
    y = tiled_apply(fn, x, tile=16, pad=1, blend=3, scale=4)
    assert y.shape == ref.shape == (1, 3, 148, 116)
    assert (y - ref).abs().max() <= 1e-5
    # the margin matters: without it the tile borders differ
    assert (tiled_apply(fn, x, tile=16, pad=0, blend=3, scale=4) - ref).abs().max() > 1e-2


def test_8bit_write_rounds_to_nearest_like_pillow(tmp_path):
    """(k + 0.6) / 255 is written as k + 1 and (k + 0.4) / 255 as k, the bytes Pillow writes
    for np.round of the same values."""
    k = np.arange(0, 255, dtype=np.float64).reshape(15, 17)
    vals = np.stack([(k + 0.6) / 255, (k + 0.4) / 255, np.minimum(k + 0.5001, 255) / 255])  # (3, 15, 17)
    write_image(tmp_path / "a.png", torch.from_numpy(vals).float()[None])
    ref = np.round(vals * 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    with Image.open(tmp_path / "a.png") as im:
        ours = np.asarray(im)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(ours[:, :, 0], k.astype(np.uint8) + 1)
    y = read_image(tmp_path / "a.png")
    assert torch.equal(y, read_image(tmp_path / "ref.png"))


def test_atomic_write_removes_its_temp_file_when_the_writer_fails(tmp_path):
    """A writer that raises (after writing part of its file) leaves nothing behind, and the
    error reaches the caller."""
    from genrestore.io import atomic_write

    def writer(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "out" / "x.png", writer)
    assert list((tmp_path / "out").iterdir()) == []


def test_grey_alpha_png_reads_as_rgba_with_its_alpha(tmp_path):
    """A Pillow "LA" PNG: the reader's contract has no 2-channel images, so it returns RGBA,
    the grey in R, G and B and the file's own alpha last (Pillow's convert("RGBA") does the same)."""
    la = np.random.default_rng(5).integers(0, 256, (6, 7, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    with Image.open(tmp_path / "la.png") as im:
        assert im.mode == "LA"
        ref = np.asarray(im.convert("RGBA"))
    y = read_image(tmp_path / "la.png")
    assert y.shape == (1, 4, 6, 7)
    got = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got[:, :, 3], la[:, :, 1])


@pytest.mark.parametrize("bits", [8, 16])
def test_grey_alpha_writes_as_a_grey_alpha_png(tmp_path, bits):
    """A 2-channel (grey, alpha) image is written as a grey+alpha PNG (colour type 4), which
    OpenCV's encoder cannot write (1, 3 or 4 channels only); its samples are round(x * levels)."""
    import cv2

    from genrestore.io import is_grey_with_alpha

    x = torch.rand(1, 2, 5, 7, generator=torch.Generator().manual_seed(9))
    write_image(tmp_path / "la.png", x, bits=bits)
    data = (tmp_path / "la.png").read_bytes()
    assert data[24:26] == bytes([bits, 4])  # IHDR: bit depth, colour type grey+alpha
    levels = 2 ** bits - 1
    ref = np.floor(x[0].permute(1, 2, 0).double().numpy() * levels + 0.5).astype(np.uint16)
    if bits == 8:
        with Image.open(tmp_path / "la.png") as im:
            assert im.mode == "LA"
            np.testing.assert_array_equal(np.asarray(im), ref)
    got = cv2.imread(str(tmp_path / "la.png"), cv2.IMREAD_UNCHANGED)  # BGRA, the grey in B, G and R
    np.testing.assert_array_equal(got, ref[:, :, [0, 0, 0, 1]])
    # the reader's contract: grey+alpha reads as RGBA; the CLI tells it from RGBA (Pillow says RGBA at 16 bits)
    assert torch.equal(read_image(tmp_path / "la.png"), quantize(x, bits)[:, [0, 0, 0, 1]])
    write_image(tmp_path / "rgba.png", x[:, [0, 0, 0, 1]], bits=bits)
    assert is_grey_with_alpha(tmp_path / "la.png") and not is_grey_with_alpha(tmp_path / "rgba.png")


def test_16bit_grey_png_with_a_transparent_level_keeps_it_as_alpha(tmp_path):
    """OpenCV decodes a 16-bit grey PNG with a transparent level (tRNS) as plain grey: the
    transparency was dropped (the 8-bit case reads it through Pillow). Now alpha is 0 exactly
    where the sample is that level, 1 elsewhere, and the grey keeps its 16 bits."""
    levels = np.random.default_rng(7).integers(0, 65536, (5, 6)).astype(np.uint16)
    levels[1, 2] = levels[3, 4] = 1234
    Image.fromarray(levels).save(tmp_path / "g.png", transparency=1234)
    y = read_image(tmp_path / "g.png")
    assert y.shape == (1, 4, 5, 6)
    np.testing.assert_array_equal(y[0, 0].numpy() * np.float32(65535), levels.astype(np.float32))
    np.testing.assert_array_equal(y[0, 3].numpy(), (levels != 1234).astype(np.float32))


def test_16bit_read_divides_by_65535_exactly(tmp_path):
    """Every 16-bit level k, written by Pillow, reads back as k / 65535: times 65535 it is k
    exactly in float32 (k / 65536 would be up to 1 level off, within allclose's rtol=1e-5)."""
    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(levels).save(tmp_path / "a.png")
    y = read_image(tmp_path / "a.png")
    assert y.shape == (1, 1, 256, 256) and y.dtype == torch.float32
    np.testing.assert_array_equal(y[0, 0].numpy() * np.float32(65535), levels.astype(np.float32))
    assert y.max() == 1.0


def test_outputs_recorded_refuses_an_output_with_a_changed_byte(tmp_path):
    """The resume test checks each output's sha256: a file with one byte replaced (same size,
    same name, still present) means the image is done again."""
    import json

    from genrestore.io import outputs_recorded, write_image_hashed

    hashes = {}
    outs = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, p in enumerate(outs):
        write_image_hashed(p, torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(i)), hashes)
    record = tmp_path / "img.json"
    record.write_text(json.dumps({"steps": 3, "sha256": hashes}))
    assert outputs_recorded(record, {"steps": 3}, outs)
    assert not outputs_recorded(record, {"steps": 4}, outs)
    data = bytearray(outs[1].read_bytes())
    data[len(data) // 2] ^= 0x01
    outs[1].write_bytes(bytes(data))
    assert not outputs_recorded(record, {"steps": 3}, outs)


def test_remove_unlisted_outputs_deletes_only_its_own_stale_files(tmp_path):
    """Of the files the old record lists and the new run does not write, only the stale output goes:
    not a kept name, an edited file, an input, a symlink (our outputs are renamed into place, so the
    user made it) nor anything outside the folder; a name no file can have (a NUL byte) is skipped."""
    import hashlib
    import json

    from genrestore.io import remove_unlisted_outputs

    out = tmp_path / "out"
    out.mkdir()
    data = b"recorded bytes"
    for name in ("new.png", "stale.png", "edited.png", "input.png"):
        (out / name).write_bytes(data)
    (out / "edited.png").write_bytes(data + b"!")
    (tmp_path / "elsewhere.png").write_bytes(data)
    (out / "link.png").symlink_to(tmp_path / "elsewhere.png")
    names = ["new.png", "stale.png", "edited.png", "input.png", "link.png", "../elsewhere.png", "a\x00b.png"]
    h = hashlib.sha256(data).hexdigest()
    (out / "img.json").write_text(json.dumps({"sha256": dict.fromkeys(names, h)}))
    removed = remove_unlisted_outputs(out / "img.json", ["new.png"], protect=[out / "input.png"])
    assert removed == [out / "stale.png"]
    assert sorted(p.name for p in out.iterdir()) == ["edited.png", "img.json", "input.png", "link.png", "new.png"]
    assert (tmp_path / "elsewhere.png").read_bytes() == data and (out / "link.png").is_symlink()


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_grey_alpha_tiff_keeps_its_alpha_like_png(tmp_path, suffix):
    """OpenCV decodes a grey+alpha TIFF as plain grey: its alpha was dropped without a word (a PNG
    of the same pixels read as RGBA). Both now read as RGBA with the file's alpha (Pillow's)."""
    la = np.random.default_rng(6).integers(0, 256, (5, 9, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / f"la{suffix}")
    y = read_image(tmp_path / f"la{suffix}")
    assert y.shape == (1, 4, 5, 9)
    got = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(got, la[:, :, [0, 0, 0, 1]])
    assert read_image(tmp_path / f"la{suffix}", "rgb").shape == (1, 3, 5, 9)


def _png_with_chunk(tmp_path, name, kind, payload, after_pixels):
    import zlib

    Image.fromarray(_rand_u8(6, 10, 3, seed=8)).save(tmp_path / "plain.png")
    data = (tmp_path / "plain.png").read_bytes()
    chunk = len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")
    at = data.rindex(b"IEND") - 4 if after_pixels else 33  # before IEND, or right after IHDR
    (tmp_path / name).write_bytes(data[:at] + chunk + data[at:])
    return tmp_path / name


@pytest.mark.parametrize("case", ["xmp-before-pixels", "xmp-after-pixels", "raw-profile-after-pixels"])
def test_png_orientation_outside_exif_matches_pillow_transpose(tmp_path, case):
    """Review reproduction: Pillow's getexif (and so exif_transpose, and read_image before this change)
    also takes a PNG's orientation from XMP (iTXt XML:com.adobe.xmp, tiff:Orientation) and from
    ImageMagick's 'Raw profile type exif' text chunk after the pixels; exif_orientation returns 1."""
    from PIL import ImageOps

    from genrestore.cli import _validate_inputs

    if case.startswith("xmp"):
        xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
        path = _png_with_chunk(tmp_path, "o.png", b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp.encode(),
                               after_pixels=case.endswith("after-pixels"))
    else:
        exif = Image.Exif()
        exif[0x0112] = 6
        raw = exif.tobytes()
        text = f"\nexif\n{len(raw):8d}\n{raw.hex()}\n"
        path = _png_with_chunk(tmp_path, "o.png", b"tEXt", b"Raw profile type exif\x00" + text.encode(), True)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    assert ref.shape[:2] == (10, 6)  # Pillow turns it
    y = (read_image(path)[0].permute(1, 2, 0).numpy() * 255).round().astype(int)
    assert y.shape == ref.shape and np.abs(y - ref).max() == 0
    assert _validate_inputs([path], decode=False) == [(10, 6)]


def test_quantize_clamps_values_outside_the_unit_range():
    x = torch.tensor([-0.2, -1e-3, 0.5, 1.3])
    assert quantize(x).mul(255).tolist() == [0.0, 0.0, 128.0, 255.0]
    assert quantize(x, bits=2).mul(3).tolist() == [0.0, 0.0, 2.0, 3.0]  # 1.5 rounds half to even


def test_write_refuses_values_a_thousandth_above_one_and_accepts_float_noise(tmp_path):
    from genrestore.io import encode_image

    with pytest.raises(InputError, match=r"\[0, 1\]"):
        encode_image(torch.full((1, 1, 2, 2), 1.001))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        encode_image(torch.full((1, 1, 2, 2), -0.001))
    data = encode_image(torch.full((1, 1, 2, 2), 1 + 1e-7))  # float32 rounding above 1: clamped, written as 255
    import io as _io
    assert np.asarray(Image.open(_io.BytesIO(data))).tolist() == [[255, 255], [255, 255]]


def test_is_grey_with_alpha_of_pngs_by_colour_type(tmp_path):
    from genrestore.io import is_grey_with_alpha

    grey = Image.fromarray(np.full((2, 2), 7, np.uint8))
    grey.save(tmp_path / "g.png")
    grey.save(tmp_path / "t.png", transparency=7)  # grey with a transparent level: a tRNS chunk
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    assert [is_grey_with_alpha(tmp_path / n) for n in ("g.png", "t.png", "rgb.png")] == [False, True, False]


def test_outputs_recorded_refuses_a_record_that_misses_an_output(tmp_path):
    import hashlib
    import json
    from genrestore.io import outputs_recorded

    (tmp_path / "a.png").write_bytes(b"a")
    (tmp_path / "b.png").write_bytes(b"b")
    (tmp_path / "r.json").write_text(json.dumps({"s": 1, "sha256": {"a.png": hashlib.sha256(b"a").hexdigest()}}))
    assert outputs_recorded(tmp_path / "r.json", {"s": 1}, [tmp_path / "a.png"])
    assert not outputs_recorded(tmp_path / "r.json", {"s": 1}, [tmp_path / "a.png", tmp_path / "b.png"])


def test_ramp_is_zero_within_pad_then_a_cosine_over_blend_pixels():
    from genrestore.io import _ramp

    t = np.array([0, 0, 1, 2, 3, 4, 4, 4]) / 4  # pad 2 zeros, blend 3 pixels strictly between 0 and 1
    ref = 0.5 - 0.5 * np.cos(np.pi * t)
    np.testing.assert_allclose(_ramp(8, True, False, pad=2, blend=3).numpy(), ref, atol=1e-15)
    np.testing.assert_allclose(_ramp(8, False, True, pad=2, blend=3).numpy(), ref[::-1], atol=1e-15)
