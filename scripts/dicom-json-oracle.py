#!/usr/bin/env python3
"""pydicom's DICOM JSON (PS3.18 F.2) of DICOM files, for the differential test of
lightbox-dicom's DICOM JSON writer (crates/lightbox-dicom/tests/dicom_json.rs).

  .venv/bin/python scripts/dicom-json-oracle.py CORPUS_DIR OUT_DIR

For every file in CORPUS_DIR/index.json that pydicom reads (force=True) and that has a
SOPInstanceUID, writes OUT_DIR/<name>.json: {"little_endian": bool, "dataset": {...}} where
"dataset" is `Dataset.to_json_dict(bulk_data_threshold=..., bulk_data_element_handler=...)` of the
data set (not the file meta group), element by element, with these adjustments:

* Pixel Data, Float Pixel Data and Double Float Pixel Data are removed at every level.
* Elements of group 0002 found in the data set are removed (the writer only emits
  TransferSyntaxUID, from the stored transfer syntax).
* A top-level element pydicom fails to serialize becomes {"error": "<exception type>"}.
* Binary values (InlineBinary, and the BulkDataURI handler's output) are the little-endian bytes:
  for big-endian files OW/OF/OL/OD/OV values are byte-swapped (the metadata document stores
  little-endian bytes).
* The bulk data handler returns "bulk:" + base64 of the value, so the test can check the bytes
  its own BulkDataURI resolves to.
* Non-finite floats become null (JSON has no NaN).

pydicom's threshold counts base64 characters (an element is bulk if len(bytes) > (t // 4) * 3);
THRESHOLD below is in decoded bytes and is passed as THRESHOLD // 3 * 4.
Writes OUT_DIR/index.json = {"version": VERSION, "threshold": THRESHOLD, "files": [...]}.
"""
import base64
import json
import math
import os
import sys
import warnings

import pydicom

VERSION = 1
# Decoded bytes; a multiple of 3 so that pydicom's base64-length threshold is exact.
THRESHOLD = 300
PIXEL = {"7FE00010", "7FE00008", "7FE00009"}
SWAP = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
LITTLE = True


def to_little(vr, b):
    n = SWAP.get(vr)
    if LITTLE or not n:
        return b
    return b"".join(b[i : i + n][::-1] for i in range(0, len(b) - len(b) % n, n))


def bulk_handler(elem):
    return "bulk:" + base64.b64encode(to_little(elem.VR, bytes(elem.value))).decode()


def clean(obj):
    """Drops pixel data, swaps big-endian inline binary, and replaces non-finite floats."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in PIXEL:
                continue
            out[k] = clean(v)
        if "InlineBinary" in out and not LITTLE and out.get("vr") in SWAP:
            raw = base64.b64decode(out["InlineBinary"])
            out["InlineBinary"] = base64.b64encode(to_little(out["vr"], raw)).decode()
        return out
    if isinstance(obj, list):
        return [clean(x) for x in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dataset_json(ds):
    out = {}
    for elem in ds:
        key = f"{int(elem.tag):08X}"
        if key in PIXEL or key.startswith("0002"):
            continue
        try:
            out[key] = clean(
                elem.to_json_dict(
                    bulk_data_element_handler=bulk_handler,
                    bulk_data_threshold=THRESHOLD // 3 * 4,
                )
            )
        except Exception as e:  # noqa: BLE001 - pydicom has no opinion on this element
            out[key] = {"error": type(e).__name__}
    return out


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    os.makedirs(dst, exist_ok=True)
    written = []
    with open(os.path.join(src, "index.json")) as f:
        names = [e["name"] for e in json.load(f)]
    warnings.simplefilter("ignore")
    global LITTLE
    for name in names:
        try:
            ds = pydicom.dcmread(os.path.join(src, name), force=True)
            if "SOPInstanceUID" not in ds:
                continue
            LITTLE = bool(ds.is_little_endian)
            doc = {"little_endian": LITTLE, "dataset": dataset_json(ds)}
            text_out = json.dumps(doc, indent=0, sort_keys=True, allow_nan=False)
        except Exception as e:  # noqa: BLE001 - any failure means "pydicom has no opinion"
            print(f"skip {name}: {type(e).__name__}", file=sys.stderr)
            continue
        with open(os.path.join(dst, name + ".json"), "w") as f:
            f.write(text_out)
        written.append(name)
    with open(os.path.join(dst, "index.json"), "w") as f:
        json.dump({"version": VERSION, "threshold": THRESHOLD, "files": written}, f, indent=0)
    print(f"{len(written)} files in {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
