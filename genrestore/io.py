"""Image files in and out, folders and globs, atomic writes, and tiled processing.

Images cross this boundary as ``float32`` tensors ``(1, C, H, W)`` in ``[0, 1]`` with
C = 1 (grey), 3 (RGB) or 4 (RGBA, alpha last, straight not premultiplied); grey+alpha files read
as RGBA, and C = 2 (grey+alpha) is written as such. Quantization to 8 or 16 bits happens here and
nowhere else.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ._checks import InputError, check_float_tensor, check_image, error_summary, whole_number

_UMASK = os.umask(0)
os.umask(_UMASK)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

# EXIF orientation tag (0x0112) -> numpy ops that undo it (applied to H x W x C arrays).
_EXIF_TRANSFORMS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: a.transpose(1, 0, 2)[::-1, :],
}


_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}


def exif_orientation(im, path: str | os.PathLike) -> int:
    """The EXIF orientation (1-8; 1 without one) of ``im``, a Pillow image opened from ``path``, as
    Pillow's ``getexif`` reads it (eXIf, ImageMagick's text chunk, XMP's ``tiff:Orientation``).
    A PNG's ``getexif`` decodes every pixel, to read metadata chunks that may follow them; when
    the chunk headers show none after the pixels, Pillow's reading of what the header gave is
    used instead, without decoding."""
    from PIL import Image

    if im.format == "PNG" and not _png_metadata_after_pixels(path):
        return int(Image.Image.getexif(im).get(0x0112, 1))
    return int(im.getexif().get(0x0112, 1))


_PNG_METADATA = {b"eXIf", b"tEXt", b"zTXt", b"iTXt"}


def _png_chunks(path: str | os.PathLike) -> tuple[list[bytes], bool]:
    """The chunk types of the PNG file ``path`` in order, read from the chunk headers only (not
    the data), and whether they run to ``IEND`` within the file (a file cut short does not)."""
    kinds: list[bytes] = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return kinds, False
        while len(head := f.read(8)) == 8:
            kinds.append(head[4:])
            if head[4:] == b"IEND":
                return kinds, True
            length = int.from_bytes(head[:4], "big")
            if f.tell() + length + 4 > size:  # the data and its CRC
                return kinds, False
            f.seek(length + 4, os.SEEK_CUR)
    return kinds, False


def _png_metadata_after_pixels(path: str | os.PathLike) -> bool:
    """Whether a PNG has an EXIF or text chunk after its first image-data chunk."""
    kinds = _png_chunks(path)[0]
    first = next((i for i, k in enumerate(kinds) if k in (b"IDAT", b"fdAT")), len(kinds))
    return any(k in _PNG_METADATA for k in kinds[first + 1:])


def png_is_complete(path: str | os.PathLike) -> bool:
    """Whether the chunks of the PNG file ``path`` run to its ``IEND`` chunk, which a file cut short
    (an interrupted copy or download) lacks; reads the chunk headers only, not the pixels."""
    return _png_chunks(path)[1]


def _pillow_header(path: Path) -> tuple[int, bool | None]:
    """``(EXIF orientation, has_alpha)`` from Pillow; ``(1, None)`` if Pillow cannot parse the file."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # header only; OpenCV decodes
    try:
        with Image.open(path) as im:
            has_alpha = im.mode in _ALPHA_MODES or "transparency" in im.info
            return exif_orientation(im, path), has_alpha
    except Exception:  # files Pillow cannot parse still decode through OpenCV
        return 1, None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def is_grey_with_alpha(path: str | os.PathLike) -> bool:
    """Whether the file ``path`` is grey with alpha (Pillow's LA, or grey with a transparent level),
    which :func:`read_image` returns as RGBA; ``False`` if Pillow cannot parse it."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # header only
    try:
        with Image.open(path) as im:
            if im.format == "PNG":  # the colour type in IHDR: Pillow reads 16-bit grey+alpha as RGBA
                with open(path, "rb") as f:
                    f.seek(25)
                    colour = f.read(1)
                return colour == b"\x04" or (colour == b"\x00" and "transparency" in im.info)
            bands = im.getbands()
            return bands[0] in ("L", "I") and (len(bands) == 2 or "transparency" in im.info)
    except Exception:
        return False
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@contextlib.contextmanager
def _native_stderr():
    """Capture what native code (libpng, libjpeg, libtiff inside OpenCV) writes to file descriptor 2,
    e.g. ``libpng error: PNG input buffer is incomplete``, which would otherwise appear beside the
    CLI's one-line error. Yields a bytearray that holds the text once the block ends.

    Only the main thread redirects (file descriptors are process-wide, and redirections from two
    threads could interleave); elsewhere this does nothing."""
    captured = bytearray()
    if threading.current_thread() is not threading.main_thread():
        yield captured
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no usable stderr: nothing to capture
        yield captured
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured += tmp.read()


def read_image(path: str | os.PathLike, mode: Literal["keep", "rgb", "gray", "rgba"] = "keep"
               ) -> torch.Tensor:
    """Read PNG (8/16-bit), JPEG, WebP, TIFF or BMP into a ``(1, C, H, W)`` float32 tensor in [0, 1].

    EXIF orientation is applied. 16-bit files keep their 16-bit precision.

    Args:
        path: the file.
        mode: ``keep`` returns the file's own channels (1 grey, 3 RGB, 4 RGBA); the others convert.

    Raises:
        InputError: the file is missing or cannot be decoded as an image.
    """
    return read_image_bits(path, mode)[0]


def read_image_bits(path: str | os.PathLike, mode: Literal["keep", "rgb", "gray", "rgba"] = "keep"
                    ) -> tuple[torch.Tensor, int]:
    """:func:`read_image`, and the bits per sample of the file: 8, 16, or 32 (float TIFF).
    Commands that write what they read at 16 bits take it from here."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    arr, native = None, ""
    if data.size:
        with _native_stderr() as captured:
            arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        native = " ".join(captured.decode(errors="replace").split())
        if arr is not None and captured:
            os.write(2, captured)  # decoder warnings of a good file are not ours to hide
    if arr is None:
        raise InputError(f"{path}: cannot decode as an image" + (f" ({native})" if native else ""))
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif arr.dtype == np.float32:
        scale = 1.0
    else:
        raise InputError(f"{path}: unsupported sample type {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{path}: unsupported image layout {arr.shape} (expected grey, grey+alpha, RGB or RGBA)")
    if scale == 1.0 and not (np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1):
        raise InputError(f"{path}: floating-point image with values outside [0, 1] or not finite")
    orientation, has_alpha = _pillow_header(path)
    # OpenCV's TIFF decoder applies the orientation tag itself, even with IMREAD_IGNORE_ORIENTATION
    oriented = path.suffix.lower() in (".tif", ".tiff")
    if arr.shape[2] == 4 and has_alpha is False:  # e.g. CMYK, which OpenCV decodes to BGRA
        arr = arr[:, :, :3]
    elif arr.shape[2] == 1 and has_alpha:  # e.g. grey+alpha TIFF, grey PNG with tRNS: OpenCV drops the alpha
        from PIL import Image

        with Image.open(path) as im:
            if arr.dtype == np.uint8:
                arr, oriented = np.asarray(im.convert("LA")), False
            elif arr.dtype == np.uint16 and isinstance(level := im.info.get("transparency"), int):
                # Pillow's LA has 8 bits: the alpha from the file's transparent grey level (tRNS) instead
                arr = np.concatenate([arr, np.where(arr == level, 0, 65535).astype(np.uint16)], axis=2)
    if arr.shape[2] in (3, 4):  # BGR(A) -> RGB(A) in one pass (a reversed view made the division strided)
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    elif arr.shape[2] == 2:  # grey + alpha
        arr = arr[:, :, [0, 0, 0, 1]]
    if orientation in _EXIF_TRANSFORMS and not oriented:
        arr = _EXIF_TRANSFORMS[orientation](arr)
    # float32 samples / scale in float32, as astype(float32) / scale gives them, in one pass
    x = torch.from_numpy(np.divide(arr, scale, dtype=np.float32, order="C")).permute(2, 0, 1)[None]
    return convert_channels(x, mode), arr.dtype.itemsize * 8


def convert_channels(x: torch.Tensor, mode: Literal["keep", "rgb", "gray", "rgba"]) -> torch.Tensor:
    """Convert ``(N, C, H, W)`` between grey, grey+alpha (C = 2), RGB and RGBA (grey uses ITU-R
    BT.601 luma); ``rgba`` of grey+alpha keeps its alpha."""
    if mode not in ("keep", "rgb", "gray", "rgba"):
        raise InputError(f"unknown channel mode {mode!r}; expected keep, rgb, gray or rgba")
    check_image(x, "image", channels=(1, 2, 3, 4), check_range=False)
    c = x.shape[1]
    if mode == "keep":
        return x
    rgb, alpha = (x[:, :c - 1], x[:, c - 1:]) if c in (2, 4) else (x, None)
    if rgb.shape[1] == 1 and mode in ("rgb", "rgba"):
        rgb = rgb.expand(-1, 3, -1, -1)
    if mode == "gray":
        if rgb.shape[1] == 3:
            w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            rgb = (rgb * w).sum(1, keepdim=True)
        return rgb
    if mode == "rgb":
        return rgb.contiguous()
    if mode == "rgba":
        if alpha is None:
            alpha = torch.ones_like(rgb[:, :1])
        return torch.cat([rgb, alpha], 1)
    raise InputError(f"unknown channel mode {mode!r}; expected keep, rgb, gray or rgba")


def quantize(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Round to the nearest of the ``2**bits`` levels in [0, 1], as saving to a file would.

    Args:
        x: float tensor of any shape, in [0, 1] (values outside are clamped, as a file would).
        bits: bits per level, 1..16.

    Returns:
        ``x``'s shape and dtype, on the levels ``k / (2**bits - 1)``.

    Raises:
        InputError: ``x`` not a float tensor (an 8-bit image is already quantized), or bad ``bits``.

    Example:
        >>> quantize(torch.tensor([0.0, 0.5, 1.0, 0.0019])).mul(255).tolist()
        [0.0, 128.0, 255.0, 0.0]
    """
    check_float_tensor(x)
    b = whole_number(bits)
    if b is None or not 1 <= b <= 16:
        raise InputError(f"expected bits as an int in 1..16, got {bits!r}")
    levels = float(2 ** b - 1)
    return x.clamp(0, 1).mul(levels).round().div(levels)


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """Create ``path`` atomically: ``writer(tmp)`` writes a temporary file in the same folder,
    which is then renamed over ``path`` (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ".NAME.XXXXXXXX.tmp": NAME cut to 200 bytes, so that a legal 255-byte name stays legal here
    stem = os.fsdecode(os.fsencode(path.name)[:200])  # bytes as the file system has them (any encoding)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"expected bytes to write to {path}, got {type(data).__name__} (encode text first)")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def json_safe(obj):
    """``obj`` with each non-finite float (the PSNR of identical images, an absent set metric)
    replaced by the string ``"inf"``, ``"-inf"`` or ``"nan"``, which Python's ``float()`` reads
    back: what strict JSON (RFC 8259 has no inf or NaN) can hold. Dicts, lists and tuples are
    copied; other values are returned as they are.

    Example:
        >>> json_safe({"psnr": float("inf"), "ssim": (1.0, float("nan"))})
        {'psnr': 'inf', 'ssim': [1.0, 'nan']}
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_line(obj) -> str:
    """``obj`` as one line of strict JSON, non-finite floats spelled as :func:`json_safe` does.

    Example:
        >>> json_line({"psnr": float("inf"), "ssim": [1.0, float("nan")]})
        '{"psnr": "inf", "ssim": [1.0, "nan"]}'
    """
    return json.dumps(json_safe(obj), allow_nan=False)


def encode_image(x: torch.Tensor, suffix: str = ".png", bits: Literal[8, 16] = 8,
                 jpeg_quality: int = 95) -> bytes:
    """Encode one ``(1, C, H, W)`` or ``(C, H, W)`` image in [0, 1] as file bytes.

    Args:
        x: the image; C = 1, 2 (grey+alpha), 3 or 4 (alpha written back where the format has it;
            grey+alpha as RGBA in formats other than PNG).
        suffix: the format, by file suffix.
        bits: 8, or 16 for PNG and TIFF.
        jpeg_quality: JPEG and WebP quality.
    """
    import cv2

    if not isinstance(x, torch.Tensor):
        raise InputError(f"expected the image as a torch tensor, got {type(x).__name__}")
    if not isinstance(suffix, str) or not suffix.startswith("."):
        raise InputError(f"expected the format as a file suffix such as '.png', got {suffix!r}")
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise InputError(f"encode_image takes one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 2, 3, 4) or not x.shape[1] or not x.shape[2]:
        raise InputError(f"expected (C, H, W) with C in (1, 2, 3, 4) and H, W >= 1, got {tuple(x.shape)}")
    if x.is_complex():
        raise InputError(f"expected a real image in [0, 1] to write, got dtype {x.dtype}")
    given_bits, given_quality = bits, jpeg_quality
    bits, jpeg_quality = whole_number(bits), whole_number(jpeg_quality)
    if bits not in (8, 16):
        raise InputError(f"expected bits 8 or 16, got {given_bits!r}")
    if jpeg_quality is None or not 1 <= jpeg_quality <= 100:
        raise InputError(f"expected jpeg_quality as an int in 1..100, got {given_quality!r}")
    # bool and integer masks of 0 and 1 write as black and white; 0..255 integers fail the range check below
    x = x if x.is_floating_point() else x.float()
    lo, hi = float(x.min()), float(x.max())
    if not (lo >= -1e-6 and hi <= 1 + 1e-6):
        raise InputError(f"expected an image in [0, 1] to write, got values in [{lo:.4g}, {hi:.4g}]")
    suffix = suffix.lower()
    if bits == 16 and suffix not in (".png", ".tif", ".tiff"):
        raise InputError(f"16-bit output needs PNG or TIFF, not {suffix}")
    levels = 65535.0 if bits == 16 else 255.0
    levels_hw = x.detach().float().cpu().clamp(0, 1).mul(levels).round()
    if bits == 8:  # cast in torch, then one contiguous HWC copy (a reversed view made numpy copy strided)
        arr = levels_hw.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    else:
        arr = np.ascontiguousarray(levels_hw.permute(1, 2, 0).numpy().astype(np.uint16))
    if arr.shape[2] == 2:
        if suffix == ".png":
            return _grey_alpha_png(arr)
        arr = arr[:, :, [0, 0, 0, 1]]
    if arr.shape[2] in (3, 4):  # RGB(A) -> BGR(A), OpenCV's order
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        if arr.shape[2] == 4:
            raise InputError("JPEG has no alpha channel; write RGBA images as PNG, WebP or TIFF")
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(jpeg_quality)]
    try:
        ok, buf = cv2.imencode(suffix, np.ascontiguousarray(arr), params)
    except cv2.error:  # e.g. "could not find encoder for the specified extension"
        raise InputError(f"cannot write images as {suffix}: OpenCV has no encoder for it (e.g. .png, .jpg, "
                         ".webp, .tif, .bmp, .ppm)") from None
    if not ok:
        raise InputError(f"cannot encode an image as {suffix}")
    return buf.tobytes()


def _grey_alpha_png(arr: np.ndarray) -> bytes:
    """A grey+alpha PNG (colour type 4) of ``arr``, ``(H, W, 2)`` uint8 or uint16: OpenCV's encoder
    writes 1, 3 or 4 channels only, Pillow's 8-bit grey+alpha only. Rows use PNG's "Up" filter."""
    import struct
    import zlib

    h, w, _ = arr.shape
    rows = arr.astype(arr.dtype.newbyteorder(">")).view(np.uint8).reshape(h, -1)  # PNG samples are big-endian
    up = np.diff(rows, axis=0, prepend=np.zeros_like(rows[:1]))  # byte minus the byte above, mod 256
    data = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1).tobytes()  # filter type 2 before each row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, arr.dtype.itemsize * 8, 4, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data, 6)) + chunk(b"IEND", b"")


def write_image(path: str | os.PathLike, x: torch.Tensor, bits: Literal[8, 16] = 8,
                jpeg_quality: int = 95) -> None:
    """Write one image atomically; the format follows the suffix (see :func:`encode_image`)."""
    path = Path(path)
    atomic_write_bytes(path, encode_image(x, path.suffix or ".png", bits, jpeg_quality))


def write_image_hashed(path: str | os.PathLike, x: torch.Tensor, hashes: dict[str, str], bits: Literal[8, 16] = 8
                       ) -> None:
    """Write ``x`` as the PNG ``path`` (``bits`` per sample) atomically and note its bytes' sha256
    in ``hashes[name]`` (for the JSON record that :func:`outputs_recorded` checks on resume)."""
    path = Path(path)
    data = encode_image(x, ".png", bits)
    atomic_write_bytes(path, data)
    hashes[path.name] = hashlib.sha256(data).hexdigest()


def outputs_recorded(record: str | os.PathLike, expect: dict, outputs: Sequence[str | os.PathLike]) -> bool:
    """Resume test: ``record`` (an image's JSON, written after its outputs) holds every key of
    ``expect`` with the same value, its ``"sha256"`` lists each of ``outputs`` by file name, and
    every file it lists (beside the record) is there with that sha256. A missing, truncated or
    replaced output, a record of other settings or one without hashes means the image is done again."""
    record = Path(record)
    try:
        prev = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(prev, dict) or any(prev.get(k) != v for k, v in expect.items()):
        return False
    hashes = prev.get("sha256")
    if not isinstance(hashes, dict) or not all(Path(q).name in hashes for q in outputs):
        return False
    files = [(record.parent / Path(name).name, h) for name, h in hashes.items()]
    return all(q.is_file() and hashlib.sha256(q.read_bytes()).hexdigest() == h for q, h in files)


def remove_unlisted_outputs(record: str | os.PathLike, keep: Iterable[str],
                            protect: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Before ``record`` is rewritten: delete the files that its previous version lists (by name and
    sha256) and the new one will not (``keep``: the new outputs' names), when they still hold the
    recorded bytes. An earlier run's optional output (``detect --save-sr``'s SR images, an
    inpainting task's mask, ``upscale --reference``'s image) would otherwise sit beside the new
    outputs as if it belonged to them. A file changed since, a symlink (outputs are renamed into
    place, so it is not one), or one of ``protect`` (this run's inputs) is left alone. Returns
    those deleted."""
    record = Path(record)
    try:
        prev = json.loads(record.read_text())
    except (OSError, ValueError):
        return []
    hashes = prev.get("sha256") if isinstance(prev, dict) else None
    if not isinstance(hashes, dict):
        return []
    keep = {Path(k).name for k in keep}
    # is_file first: it is False for a name no file can have (a NUL byte), which resolve() raises on
    stale = [(q, h) for q, h in ((record.parent / Path(str(name)).name, h) for name, h in hashes.items())
             if q.name not in keep and q.is_file() and not q.is_symlink()]
    if not stale:  # the usual case: the inputs (called once per image, with all of them) are not resolved
        return []
    protected = {Path(q).resolve() for q in protect}
    removed = []
    for q, h in stale:
        if q.resolve() not in protected and hashlib.sha256(q.read_bytes()).hexdigest() == h:
            q.unlink()
            removed.append(q)
    return removed


def list_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (their images, sorted, not recursive) and globs into image paths.

    Raises:
        InputError: an input matches nothing, a named file is not an image by its suffix, or
            no image is found at all (e.g. only empty folders).
    """
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)  # one path is one input
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"{p}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            matches = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES]
            if not matches:
                raise InputError(f"{item}: no such file, folder or matching images")
            found += matches
    if not inputs:
        raise InputError("no input images given")
    if not found:
        raise InputError(f"no images found in {', '.join(map(str, inputs))} "
                         f"(expected files ending in {', '.join(IMAGE_SUFFIXES)})")
    return list(dict.fromkeys(found))


def read_json_object(path: str | os.PathLike, what: str = "a JSON object") -> dict:
    """The JSON object in ``path``; a file that is not one (damaged, cut, a list) is one
    :class:`InputError` naming it and ``what`` it should hold."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not {what} ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not {what} (a JSON {type(data).__name__})")
    return data


def _unreadable_safetensors(path: str | os.PathLike, e: Exception) -> InputError:
    return InputError(f"{path}: not a readable safetensors file ({error_summary(e, 120)})")


def open_npz(path: str | os.PathLike, what: str):
    """``np.load`` of an ``.npz`` archive with pickles refused, after checking that the file is one
    (a zip archive): other files get an :class:`InputError` naming ``path`` and ``what`` it should
    hold, instead of numpy's advice to unpickle them."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
    if magic != b"PK\x03\x04":
        raise InputError(f"{path}: not an .npz archive ({what})")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: a damaged .npz archive ({what}): {e}") from None


def load_safetensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file; :class:`InputError` naming it when it cannot be read
    (safetensors raises its own error types for damaged or foreign files)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except Exception as e:
        raise _unreadable_safetensors(path, e) from None


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file's header (``{}`` if it has none), read without
    its tensors; :class:`InputError` naming the file when it cannot be read, as :func:`load_safetensors`.
    The header check covers a truncated file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise _unreadable_safetensors(path, e) from None


def safetensors_record(path: str | os.PathLike, key: str, required: Sequence[str], what: str) -> dict:
    """The JSON object stored under ``key`` in a ``.safetensors`` file's metadata (a checkpoint's
    run record), holding every ``required`` entry; :class:`InputError` naming the file when it is
    damaged or is not ``what`` (no such record)."""
    text = safetensors_metadata(path).get(key, "")  # a damaged file: its own error (InputError is a ValueError)
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or any(k not in record for k in required):
        raise InputError(f"{path}: not {what} (no run record in its metadata); "
                         "use another output folder or delete the checkpoint")
    return record


def _unwritable(path: Path) -> str:
    """Why nothing can be created at ``path`` ("" if something can): the nearest of it and its
    parents that exists is a file, or a folder this process cannot write (read-only, /proc)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                return f"{p} is a file"
            if not os.access(p, os.W_OK | os.X_OK):
                return f"{p} is not writable"
            try:  # as the atomic writes will: a temporary file beside the output (os.access says yes
                # to root on read-only mounts and on /proc, which refuses new files)
                fd, probe = tempfile.mkstemp(dir=p, prefix=".genrestore-probe-")
            except OSError as e:
                return f"{p} is not writable: {e.strerror or type(e).__name__}"
            os.close(fd)
            os.unlink(probe)
            return ""
    return ""


def check_output_folder(folder: str | os.PathLike) -> None:
    """Raise :class:`InputError` if ``folder`` cannot be made a folder and written: it, or the
    nearest of its parents that exists, is a file or cannot be written."""
    folder = Path(folder)
    why = _unwritable(folder)
    if why:
        raise InputError(f"{folder}: cannot be an output folder ({why}); choose another")


def check_output_file(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), what: str = "") -> None:
    """Raise :class:`InputError` if ``path`` cannot be written as a file: it is a folder, the
    nearest of its parents that exists is a file or cannot be written, or it is one of ``inputs``.
    ``what`` names the option in the message (e.g. ``"--csv"``)."""
    path = Path(path)
    if isinstance(inputs, (str, os.PathLike)):  # one path, not a sequence of its characters
        inputs = [inputs]
    label = f"{what} {path}" if what else str(path)
    if path.is_dir():
        raise InputError(f"{label}: is a folder; give a file name")
    why = _unwritable(path.parent)
    if why:
        raise InputError(f"{label}: cannot be written ({why}); choose another")
    if path.resolve() in {Path(p).resolve() for p in inputs}:
        raise InputError(f"{label}: would overwrite an input; choose another")


def check_outputs_not_inputs(outputs: Iterable[Path], inputs: Sequence[Path]) -> None:
    """Raise :class:`InputError` if writing an output would overwrite an input file."""
    resolved = {p.resolve() for p in inputs}
    for out in outputs:
        if out.resolve() in resolved:
            raise InputError(f"{out}: output would overwrite an input; choose another output folder")


# --------------------------------------------------------------------------------------------
# Tiling


def _tile_grid(size: int, tile: int, overlap: int, multiple: int = 1) -> tuple[list[int], int]:
    """Starts and side of the tiles along one axis of ``size`` px: the fewest tiles of at most
    ``tile`` px that overlap by at least ``overlap``, each as small as that count allows, spread
    evenly. Equal-sided tiles of the largest size would compute up to ``(tile / side)^2`` times
    more (1.5x for 512 px in 256 px tiles). With ``multiple`` (``tile`` one of its multiples) the
    grid is laid out in units of it when ``size`` is one too (and ``tile`` exceeds ``overlap``
    rounded up to it): sides and starts are multiples, so a network that folds ``multiple`` pixels
    into channels (pixel-unshuffle) sees every tile at the whole image's phase; otherwise only the
    sides are."""
    if size <= tile:
        return [0], size
    if multiple > 1 and size % multiple == 0 and tile // multiple > -(-overlap // multiple):
        starts, side = _tile_grid(size // multiple, tile // multiple, -(-overlap // multiple))
        return [s * multiple for s in starts], side * multiple
    n = math.ceil((size - tile) / (tile - overlap)) + 1
    side = min(tile, -(-math.ceil((size + (n - 1) * overlap) / n) // multiple) * multiple)
    # consecutive starts differ by at most ceil((size - side) / (n - 1)) <= side - overlap
    return [(i * (size - side)) // (n - 1) for i in range(n)], side


def _ramp(length: int, lead_interior: bool, tail_interior: bool, pad: int, blend: int,
          dtype=torch.float64) -> torch.Tensor:
    """1-D tile weight: zero within ``pad`` of an interior edge, then a cosine ramp of ``blend`` px."""
    i = torch.arange(length, dtype=dtype)
    w = torch.ones(length, dtype=dtype)
    for interior, dist in ((lead_interior, i), (tail_interior, length - 1 - i)):
        if interior:
            t = ((dist - pad + 1) / (blend + 1)).clamp(0, 1)
            w = w * (0.5 - 0.5 * torch.cos(math.pi * t))
    return w


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int = 256,
                pad: int = 16, blend: int = 16, scale: int = 1, multiple: int = 1,
                out_device: torch.device | str | None = None) -> torch.Tensor:
    """Apply ``fn`` to overlapping tiles of ``x`` and blend the results smoothly.

    Neighbouring tiles overlap by at least ``2 * pad + blend`` input pixels. Output pixels within
    ``pad`` of a tile's interior edge get zero weight, so an operator whose receptive field
    radius is at most ``pad`` gives the untiled result; the next ``blend`` pixels fade in with a
    cosine ramp, which hides seams for operators with wider context. An axis longer than ``tile``
    gets the fewest tiles that overlap enough, each shrunk to the smallest side (a multiple of
    ``multiple``) that still covers it, so no pixel is computed more often than needed. Weights are normalized
    in float64, so a per-pixel operator with float32 (or lower) output is reproduced exactly
    (float64 outputs to within an ulp).

    Args:
        fn: maps ``(N, C, h, w)`` to ``(N, C', h * scale, w * scale)``.
        x: ``(N, C, H, W)`` input.
        tile: largest tile side in input pixels.
        pad: pixels discarded at interior tile edges (the operator's receptive-field radius).
        blend: width of the cosine cross-fade, in input pixels (>= 1).
        scale: integer output/input size ratio of ``fn`` (4 for a x4 super-resolver).
        multiple: tile sides (and, on axes that are its multiples, tile starts) are multiples
            of it (a UNet's size multiple, an SR network's pixel-unshuffle factor), or the whole
            axis; ``tile`` must be one too.
        out_device: where the output is assembled (default: ``x.device``).

    Returns:
        ``(N, C', H * scale, W * scale)`` tensor in ``fn``'s output dtype.

    Example:
        >>> x = torch.rand(1, 3, 50, 70)
        >>> y = tiled_apply(lambda t: t * 2, x, tile=24, pad=2, blend=4)
        >>> torch.equal(y, x * 2)
        True
    """
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise InputError(f"expected (N, C, H, W) images to tile, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    ints = [whole_number(v) for v in (tile, pad, blend, scale, multiple)]
    if None in ints or min(ints[3:]) < 1:
        raise InputError(f"expected tile, pad, blend as ints and scale, multiple as ints >= 1, got tile={tile!r}, "
                         f"pad={pad!r}, blend={blend!r}, scale={scale!r}, multiple={multiple!r}")
    tile, pad, blend, scale, multiple = ints
    if blend < 1 or pad < 0:
        raise InputError(f"tiling needs blend >= 1 and pad >= 0, got blend={blend}, pad={pad}")
    if tile % multiple:
        raise InputError(f"tile ({tile}) must be a multiple of {multiple}")
    overlap = 2 * pad + blend
    if tile <= overlap:
        raise InputError(f"tile ({tile}) must be larger than 2 * pad + blend ({overlap})")
    n, _, h, w = x.shape
    (ys, th), (xs, tw) = _tile_grid(h, tile, overlap, multiple), _tile_grid(w, tile, overlap, multiple)
    out_device = torch.device(out_device) if out_device is not None else x.device
    acc = wsum = None
    out_dtype = None
    for i, y0 in enumerate(ys):
        wy = _ramp(th * scale, i > 0, i < len(ys) - 1, pad * scale, blend * scale)
        for j, x0 in enumerate(xs):
            wx = _ramp(tw * scale, j > 0, j < len(xs) - 1, pad * scale, blend * scale)
            out = fn(x[:, :, y0:y0 + th, x0:x0 + tw])
            if out.ndim != 4 or out.shape[0] != n or out.shape[-2:] != (th * scale, tw * scale):
                raise ValueError(f"fn returned {tuple(out.shape)} for a {th}x{tw} tile of {n} image(s); expected "
                                 f"({n}, C, {th * scale}, {tw * scale}) (scale={scale})")
            if acc is None:
                out_dtype = out.dtype
                acc = torch.zeros(n, out.shape[1], h * scale, w * scale, dtype=torch.float64, device=out_device)
                wsum = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float64, device=out_device)
            weight = (wy[:, None] * wx[None, :]).to(out_device)
            sl = (slice(None), slice(None), slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale))
            acc[sl] += out.to(out_device, torch.float64) * weight
            wsum[sl] += weight
    acc.div_(wsum)  # in place: the float64 sums are the largest buffer
    if not out_dtype.is_floating_point:  # integer outputs: the blend of equal values is exact after rounding
        acc.round_()
    return acc.to(out_dtype)
