"""Upload checks read headers only and name every bad file precisely."""

from __future__ import annotations

import pytest

from snapmatch.errors import InvalidUpload, PermanentImageError
from snapmatch.imaging import ImageType, inspect_upload, prepare, sniff_type
from tests.images import bad_uploads, jpeg, photo_as


def _inspect(data: bytes, max_pixels: int = 100_000_000):
    return inspect_upload(data[:65536], data[-4096:], len(data), max_bytes=50 << 20, max_pixels=max_pixels)


@pytest.mark.parametrize("kind", [k for k in bad_uploads() if k != "path_traversal_name"])
def test_bad_files_are_rejected_with_their_code(kind: str) -> None:
    _name, data, code = bad_uploads()[kind]
    with pytest.raises(InvalidUpload) as info:
        _inspect(data)
    assert info.value.code == code
    assert info.value.message


def test_good_jpeg_header() -> None:
    header = _inspect(jpeg(321, 123))
    assert (header.type, header.width, header.height) == (ImageType.JPEG, 321, 123)


def test_pixel_limit_is_applied_from_the_header() -> None:
    with pytest.raises(InvalidUpload) as info:
        _inspect(jpeg(400, 300), max_pixels=100_000)
    assert info.value.code == "image_too_large"


def test_size_limit() -> None:
    data = jpeg(64, 64)
    with pytest.raises(InvalidUpload) as info:
        inspect_upload(data, data[-4096:], len(data), max_bytes=len(data) - 1, max_pixels=10**8)
    assert info.value.code == "file_too_large"


def test_sniffing_png_and_webp() -> None:
    assert sniff_type(b"\x89PNG\r\n\x1a\n....") is ImageType.PNG
    assert sniff_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") is ImageType.WEBP
    assert sniff_type(b"GIF89a") is None


@pytest.mark.parametrize(
    "options",
    [{"quality": 90}, {"lossless": True}, {"lossless": True, "alpha": True}, {"quality": 80, "alpha": True}],
    ids=["lossy", "lossless", "lossless-alpha", "lossy-alpha-extended"],
)
def test_webp_header_is_read_from_the_first_bytes_of_a_large_file(options) -> None:  # type: ignore[no-untyped-def]
    data = photo_as("WEBP", 2000, 1500, seed=4, **options)
    assert len(data) > 65536  # Pillow cannot open it from the head alone
    header = _inspect(data)
    assert (header.type, header.width, header.height) == (ImageType.WEBP, 2000, 1500)
    assert prepare(data, max_pixels=10**8).bgr.shape == (1500, 2000, 3)


def test_webp_pixel_limit_and_truncation() -> None:
    data = photo_as("WEBP", 2000, 1500, seed=5, quality=90)
    with pytest.raises(InvalidUpload) as info:
        _inspect(data, max_pixels=2_000_000)
    assert info.value.code == "image_too_large"
    with pytest.raises(InvalidUpload) as info:
        _inspect(data[: len(data) // 2])
    assert info.value.code == "truncated_image"
    with pytest.raises(InvalidUpload) as info:
        _inspect(data[:12] + b"XXXX" + data[16:])
    assert info.value.code == "corrupt_image"


@pytest.mark.parametrize(("fmt", "named"), [("GIF", "a GIF image"), ("BMP", "a BMP image"), ("TIFF", "a TIFF image")])
def test_other_image_formats_are_named_in_the_refusal(fmt: str, named: str) -> None:
    with pytest.raises(InvalidUpload) as info:
        _inspect(photo_as(fmt, 64, 48))
    assert info.value.code == "unsupported_type"
    assert named in info.value.message and "JPEG, PNG or WebP" in info.value.message


def test_prepare_makes_thumbnail_and_scores() -> None:
    prepared = prepare(jpeg(1200, 800), max_pixels=10**8)
    assert prepared.bgr.shape == (800, 1200, 3)
    assert prepared.thumbnail_jpeg[:3] == b"\xff\xd8\xff"
    assert prepared.sharpness > 0 and 0 < prepared.exposure < 1


def test_prepare_honours_exif_orientation() -> None:
    import io

    from PIL import Image

    img = Image.new("RGB", (300, 100), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    prepared = prepare(out.getvalue(), max_pixels=10**8)
    assert prepared.bgr.shape[:2] == (300, 100)
    assert (prepared.width, prepared.height) == (100, 300)


def test_undecodable_bytes_are_permanent_errors() -> None:
    _name, data, _code = bad_uploads()["corrupt_jpeg_header"]
    with pytest.raises(PermanentImageError) as info:
        prepare(data, max_pixels=10**8)
    assert info.value.code == "corrupt_image"


def test_a_jpeg_whose_metadata_passes_64_kib_is_read_from_its_frame_header() -> None:
    """Lightroom/Photoshop exports: ICC (APP2), XMP (APP1) and APP13 segments before the frame header."""
    import io

    from tests.images import with_metadata_segments

    data = with_metadata_segments(jpeg(321, 123))
    assert len(data) > 230_000
    header = inspect_upload(
        data[:65536], data[-4096:], len(data), max_bytes=50 << 20, max_pixels=10**8, source=io.BytesIO(data)
    )
    assert (header.type, header.width, header.height) == (ImageType.JPEG, 321, 123)
    prepared = prepare(data, max_pixels=10**8)
    assert (prepared.width, prepared.height) == (321, 123)


def test_a_jpeg_without_a_frame_header_in_the_search_bound_is_corrupt() -> None:
    import io

    from snapmatch.imaging import _jpeg_size
    from tests.images import with_metadata_segments

    data = with_metadata_segments(jpeg(64, 64), app2_bytes=600_000)
    with pytest.raises(ValueError, match="frame header"):
        _jpeg_size(io.BytesIO(data), limit=300_000)
    assert _jpeg_size(io.BytesIO(data)) == (64, 64)
