#!/usr/bin/env python3
"""Real DICOM test files for import tests, fetched from the pydicom / pydicom-data wheels.

Run with the project venv (made by scripts/setup-test-env.sh, which installs the wheels from
PyPI):

  .venv/bin/python scripts/dicom-corpus.py collect DIR
      Copies every DICOM test file shipped in the pydicom 3.0.2 and pydicom-data 1.0.0 wheels
      into DIR (flat, original file names; pydicom's copy wins on a name clash) and writes
      DIR/index.json: [{"name", "source", "size"}] sorted by name. Idempotent.

The files are real clinical/vendor samples (provenance in the wheels' README.txt); tests read
them from DIR and never from ../shared.
"""
import json
import os
import shutil
import sys


def sources():
    import pydicom
    import data_store  # pydicom-data

    yield "pydicom", os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    yield "pydicom-data", os.path.join(os.path.dirname(data_store.__file__), "data")


def is_candidate(name):
    low = name.lower()
    if low.endswith((".txt", ".py", ".pyc", ".json", ".md", ".gz", ".bz2", ".zip")):
        return False
    return not low.startswith(("readme", "__"))


def collect(out):
    os.makedirs(out, exist_ok=True)
    index = {}
    for label, root in sources():
        for dirpath, _, files in os.walk(root):
            for name in sorted(files):
                if not is_candidate(name) or name in index:
                    continue
                src = os.path.join(dirpath, name)
                dst = os.path.join(out, name)
                if not os.path.exists(dst) or os.path.getsize(dst) != os.path.getsize(src):
                    # Copy then rename: collectors sharing OUT never see a partial file.
                    tmp = f"{dst}.{os.getpid()}.tmp"
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, dst)
                index[name] = {"name": name, "source": label, "size": os.path.getsize(src)}
    tmp = os.path.join(out, f"index.json.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump([index[k] for k in sorted(index)], f, indent=1)
    os.replace(tmp, os.path.join(out, "index.json"))
    print(f"{len(index)} files in {out}")


def main(argv):
    if len(argv) == 3 and argv[1] == "collect":
        collect(argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
