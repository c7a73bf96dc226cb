#!/usr/bin/env python3
"""Reference pixel samples of every frame of a DICOM corpus, decoded by pydicom, for the
lightbox-frames tests (crates/lightbox-frames/tests/corpus.rs).

  .venv/bin/python scripts/dicom-frames-oracle.py DIR OUT
      For every file in DIR/index.json (made by scripts/dicom-corpus.py collect), decodes all
      frames with pydicom 3 (plugins: pylibjpeg-libjpeg, pylibjpeg-openjpeg, pillow, RLE) and
      writes OUT/<name>.raw (all frames, little-endian, samples interleaved by component) and
      OUT/oracle.json: [{"name", "transfer_syntax", "rows", "columns", "samples_per_pixel",
      "bits_allocated", "bits_stored", "pixel_representation", "photometric", "frames",
      "dtype", "error"}]. Files without Pixel Data get "no_pixel_data": true.
      Frames pydicom's plugins cannot decode fall back to pydicom on the read data set, then
      (JPEG only) to imagecodecs' libjpeg-turbo; "decoder" says which one answered.
      It also writes HTJ2K versions of a few native files (OUT/generated/htj2k_*, encoded
      by imagecodecs/OpenJPH; entries with "path") since the corpus holds no HTJ2K, and
      8-bit baseline JPEG files relabelled as JPEG Extended (.51), which HealthImaging
      transcodes (OUT/generated/relabelled_*).
      Colour: frames of lossy JPEG (.50/.51) are converted YBR -> RGB (as_rgb, what JPEG
      decoders return); everything else keeps its photometric interpretation (as_rgb=False),
      with YBR_FULL_422 native data expanded to YBR_FULL by pydicom.

  .venv/bin/python scripts/dicom-frames-oracle.py check LIST.json
      Second, independent decoder pass: LIST.json is [{"frame", "codec", "reference",
      "offset", "dtype", "shape"}]; each stored frame file is decoded with imagecodecs
      (htj2k_decode = OpenJPH for HTJ2K, jpeg2k_decode = OpenJPEG for JPEG 2000) and compared
      with the reference samples at `offset` of file `reference`. Prints a JSON list of
      {"frame", "ok", "error"}.
"""
import json
import os
import sys

import numpy as np

LOSSY_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
VIDEO_PREFIX = "1.2.840.10008.1.2.4.10"


def reference(src, out):
    import pydicom
    from pydicom.pixels import iter_pixels

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(src, "index.json")) as f:
        names = [e["name"] for e in json.load(f)]
    results = []
    for name in names:
        path = os.path.join(src, name)
        entry = {"name": name}
        results.append(entry)
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is recorded
            entry["error"] = f"dcmread: {type(e).__name__}"
            continue
        if "PixelData" not in ds:
            entry["no_pixel_data"] = True
            continue
        ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
        entry.update(
            transfer_syntax=ts,
            rows=int(ds.get("Rows", 0) or 0),
            columns=int(ds.get("Columns", 0) or 0),
            samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
            bits_allocated=int(ds.get("BitsAllocated", 0) or 0),
            bits_stored=int(ds.get("BitsStored", 0) or 0),
            pixel_representation=int(ds.get("PixelRepresentation", 0) or 0),
            photometric=str(ds.get("PhotometricInterpretation", "")),
            sop_class=str(ds.get("SOPClassUID", "")),
        )
        try:
            entry["number_of_frames"] = int(ds.get("NumberOfFrames", 1) or 1)
        except Exception:  # noqa: BLE001
            entry["number_of_frames"] = None
        if ts.startswith(VIDEO_PREFIX):
            entry["video"] = True
            continue
        as_rgb = ts in LOSSY_JPEG
        raw = os.path.join(out, name + ".raw")
        errors = []
        for how, frames in (
            ("pydicom", lambda: iter_pixels(path, as_rgb=as_rgb)),
            ("pydicom-dataset", lambda: dataset_frames(ds, as_rgb)),
            ("imagecodecs", lambda: imagecodecs_frames(ds, ts)),
        ):
            try:
                count = 0
                dtype = None
                with open(raw, "wb") as f:
                    for arr in frames():
                        arr = np.ascontiguousarray(arr)
                        dtype = arr.dtype.newbyteorder("<")
                        f.write(arr.astype(dtype).tobytes())
                        count += 1
                entry["frames"] = count
                entry["dtype"] = dtype.str if dtype is not None else None
                entry["decoder"] = how
                break
            except Exception as e:  # noqa: BLE001
                errors.append(f"{how}: {type(e).__name__}: {str(e)[:160]}")
                if os.path.exists(raw):
                    os.remove(raw)
        else:
            entry["error"] = "decode: " + " | ".join(errors)
    results.extend(generate_htj2k(src, out))
    results.extend(generate_relabelled(src, out))
    with open(os.path.join(out, "oracle.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"{len(results)} files described in {out}")


# Native corpus files re-encoded as HTJ2K (the corpus has none): (source, transfer syntax,
# basic offset table?). Grey 8/16-bit signed and unsigned, RGB, multi-frame with and
# without a Basic Offset Table.
HTJ2K_SOURCES = [
    ("CT_small.dcm", "1.2.840.10008.1.2.4.201", True),
    ("MR_small.dcm", "1.2.840.10008.1.2.4.202", True),
    ("SC_rgb.dcm", "1.2.840.10008.1.2.4.201", True),
    ("SC_rgb_2frame.dcm", "1.2.840.10008.1.2.4.202", False),
    ("emri_small.dcm", "1.2.840.10008.1.2.4.201", False),
    ("US1_UNCR.dcm", "1.2.840.10008.1.2.4.202", True),
    # Lossy (irreversible 9/7) HTJ2K, kept as it is: reference = OpenJPH's decoding.
    ("CT_small.dcm", "1.2.840.10008.1.2.4.203", True),
    ("SC_rgb.dcm", "1.2.840.10008.1.2.4.203", True),
]


def write_reference(out, name, ds, frames, ts, decoder):
    """Writes NAME.raw (frames, little-endian) and returns the oracle.json entry of a generated file."""
    dtype = frames[0].dtype.newbyteorder("<")
    with open(os.path.join(out, name + ".raw"), "wb") as f:
        for a in frames:
            f.write(a.astype(dtype).tobytes())
    return {
        "name": name,
        "path": os.path.join("generated", name),
        "transfer_syntax": ts,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "samples_per_pixel": int(ds.SamplesPerPixel),
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.BitsStored),
        "pixel_representation": int(ds.PixelRepresentation),
        "photometric": str(ds.PhotometricInterpretation),
        "number_of_frames": len(frames),
        "frames": len(frames),
        "dtype": dtype.str,
        "decoder": decoder,
    }


def generate_htj2k(src, out):
    """Writes OUT/generated/htj2k_<name> (HTJ2K lossless by imagecodecs / OpenJPH) and their
    reference samples; returns their oracle entries ("path" relative to OUT)."""
    import imagecodecs
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.pixels import iter_pixels

    gen = os.path.join(out, "generated")
    os.makedirs(gen, exist_ok=True)
    entries = []
    for source, ts, bot in HTJ2K_SOURCES:
        path = os.path.join(src, source)
        if not os.path.exists(path):
            continue
        lossy = ts == "1.2.840.10008.1.2.4.203"
        name = ("htj2k_lossy_" if lossy else "htj2k_") + source
        ds = pydicom.dcmread(path)
        frames = [np.ascontiguousarray(a) for a in iter_pixels(path, as_rgb=False)]
        levels = lambda a: 4 if min(a.shape[:2]) >= 16 else 1  # noqa: E731
        if lossy:
            encoded = [imagecodecs.htj2k_encode(a, level=90, reversible=False, resolutions=levels(a)) for a in frames]
            frames = [np.ascontiguousarray(imagecodecs.htj2k_decode(e)).astype(a.dtype) for e, a in zip(encoded, frames)]
        else:
            encoded = [imagecodecs.htj2k_encode(a, reversible=True, resolutions=levels(a)) for a in frames]
        ds.file_meta.TransferSyntaxUID = ts
        ds.PixelData = encapsulate(encoded, has_bot=bot)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        if "PlanarConfiguration" in ds:
            ds.PlanarConfiguration = 0
        ds.save_as(os.path.join(gen, name), enforce_file_format=True)
        entries.append(write_reference(out, name, ds, frames, ts, "pydicom (source before HTJ2K encoding)"))
    return entries


# 8-bit baseline JPEG streams are valid JPEG Extended (.51) streams: relabelled copies exercise
# the .51 transcoding path (YBR_FULL_422 → RGB) that the corpus only has 12-bit files for.
RELABELLED = [
    ("SC_rgb_dcmtk_+eb+cy+s2.dcm", "1.2.840.10008.1.2.4.51"),
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.51"),
]


def generate_relabelled(src, out):
    import pydicom
    from pydicom.pixels import iter_pixels

    gen = os.path.join(out, "generated")
    os.makedirs(gen, exist_ok=True)
    entries = []
    for source, ts in RELABELLED:
        path = os.path.join(src, source)
        if not os.path.exists(path):
            continue
        name = "relabelled_" + source
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ts
        target = os.path.join(gen, name)
        ds.save_as(target, enforce_file_format=True)
        frames = [np.ascontiguousarray(a) for a in iter_pixels(target, as_rgb=True)]
        entries.append(write_reference(out, name, ds, frames, ts, "pydicom"))
    return entries


def dataset_frames(ds, as_rgb):
    """pydicom on the already-read data set (e.g. deflated files, inflated by dcmread)."""
    from pydicom.pixels import pixel_array

    arr = pixel_array(ds, as_rgb=as_rgb)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if nframes == 1:
        yield arr
    else:
        yield from arr


def imagecodecs_frames(ds, ts):
    """Fallback for JPEG frames pydicom's plugins refuse (e.g. 12-bit extended): libjpeg-turbo
    through imagecodecs, frames split by pydicom."""
    import imagecodecs
    from pydicom.encaps import generate_frames

    if not ts.startswith("1.2.840.10008.1.2.4.5") and ts != "1.2.840.10008.1.2.4.70":
        raise ValueError("no imagecodecs fallback for this transfer syntax")
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    for frame in generate_frames(ds.PixelData, number_of_frames=nframes):
        arr = imagecodecs.jpeg8_decode(frame)
        if int(ds.PixelRepresentation) == 1:
            arr = arr.astype(np.int16 if arr.dtype.itemsize == 2 else np.int8)
        yield arr


def check(list_path):
    import imagecodecs

    with open(list_path) as f:
        items = json.load(f)
    out = []
    for it in items:
        res = {"frame": it["frame"], "ok": False}
        try:
            with open(it["frame"], "rb") as f:
                data = f.read()
            if it["codec"] == "htj2k":
                arr = imagecodecs.htj2k_decode(data)
            else:
                arr = imagecodecs.jpeg2k_decode(data)
            shape = tuple(it["shape"])  # (rows, cols, samples)
            if arr.ndim == 3 and arr.shape[0] == shape[2] and arr.shape[2] != shape[2]:
                arr = np.moveaxis(arr, 0, -1)  # (3, H, W) without MCT
            arr = arr.reshape(shape)
            dt = np.dtype(it["dtype"])
            count = int(np.prod(shape))
            ref = np.fromfile(it["reference"], dtype=dt, count=count, offset=it["offset"])
            ref = ref.reshape(shape)
            if np.array_equal(arr.astype(np.int64), ref.astype(np.int64)):
                res["ok"] = True
            else:
                res["error"] = "samples differ"
        except Exception as e:  # noqa: BLE001
            res["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        out.append(res)
    json.dump(out, sys.stdout)


def main(argv):
    if len(argv) == 3 and argv[1] == "check":
        check(argv[2])
        return 0
    if len(argv) == 3:
        reference(argv[1], argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
