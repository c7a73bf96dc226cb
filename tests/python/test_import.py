"""DICOM import jobs end to end, as a user runs them against one Lightbox: `aws s3 cp --recursive`
to the built-in S3, `aws medical-imaging start-dicom-import-job`, poll `get-dicom-import-job`,
read the manifest and ndjson files back with `aws s3 cp`, then check every stored frame against
pydicom's decoding of the source file (decoded with an independent HTJ2K decoder: imagecodecs /
OpenJPH) and its CRC-32 against the metadata document's checksum."""

import glob
import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from conftest import REPO, wait_status

AWS = str(pathlib.Path(sys.executable).parent / "aws")
if not pathlib.Path(AWS).exists():
    AWS = str(REPO / ".venv" / "bin" / "aws")

ROLE = "arn:aws:iam::000000000000:role/ImportRole"

# Real files from the pydicom wheels covering the transfer syntaxes HealthImaging transcodes.
CORPUS_FILES = [
    "CT_small.dcm",  # explicit VR LE, signed 16-bit
    "MR_small.dcm",  # explicit VR LE
    "MR_small_implicit.dcm",  # implicit VR LE (same SOP instance as MR_small)
    "MR_small_bigendian.dcm",  # explicit VR BE (same SOP instance)
    "MR_small_RLE.dcm",  # RLE lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEG-LL.dcm",  # JPEG lossless
    "emri_small.dcm",  # multi-frame
    "SC_rgb.dcm",  # RGB
    "image_dfl.dcm",  # deflated
]

LOSSLESS_SOURCES = set(CORPUS_FILES)


def run_aws(server, *args, check=True):
    env = dict(os.environ)
    env.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_MAX_ATTEMPTS": "1", "AWS_PAGER": "", "AWS_DISABLE_HOST_PREFIX_INJECTION": "true"})
    cmd = [AWS, *args, "--endpoint-url", server.url]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, f"{cmd}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def aws_json(server, *args):
    return json.loads(run_aws(server, *args, "--output", "json").stdout)


def make_datastore(server, name, fmt=None):
    client = server.client()
    kw = {"datastoreName": name}
    if fmt:
        kw["losslessStorageFormat"] = fmt
    ds = client.create_datastore(**kw)["datastoreId"]
    wait_status(client, ds, "ACTIVE")
    return ds


def start_and_wait(server, ds, input_uri, output_uri, timeout=300):
    started = aws_json(server, "medical-imaging", "start-dicom-import-job", "--datastore-id", ds,
                       "--input-s3-uri", input_uri, "--output-s3-uri", output_uri,
                       "--data-access-role-arn", ROLE, "--job-name", "py-import")
    assert started["jobStatus"] == "SUBMITTED"
    assert started["datastoreId"] == ds
    job_id = started["jobId"]
    deadline = time.monotonic() + timeout
    seen = set()
    while True:
        props = aws_json(server, "medical-imaging", "get-dicom-import-job", "--datastore-id", ds,
                         "--job-id", job_id)["jobProperties"]
        seen.add(props["jobStatus"])
        if props["jobStatus"] in ("COMPLETED", "FAILED"):
            return props, seen
        assert time.monotonic() < deadline, f"job still {props['jobStatus']}"
        time.sleep(0.2)


def read_outputs(server, props, dest):
    run_aws(server, "s3", "cp", "--recursive", props["outputS3Uri"], str(dest))
    manifest = json.loads((dest / "job-output-manifest.json").read_text())
    lines = {}
    for name in ("SUCCESS/success.ndjson", "FAILURE/failure.ndjson", "WARNING/warning.ndjson"):
        text = (dest / name).read_text()
        lines[name.split("/")[0]] = [json.loads(l) for l in text.splitlines() if l.strip()]
    return manifest, lines


def blob_root(server):
    """The directory holding the server's blobs, on either backend: `data_dir/blobs` (embedded)
    or the test S3 server's directory for the server's bucket prefix (postgres-s3; the test S3
    is s3s-fs, which keeps objects as files)."""
    import conftest

    env = conftest.scale_out_env(server.data_dir, server.log_dir.parent)
    if not env:
        return server.data_dir / "blobs"
    bucket_and_prefix = env["LIGHTBOX_BLOB_STORE"][len("s3://"):]
    return conftest._SCALE_OUT.root / bucket_and_prefix


def catalog_rows(server, sql):
    """Rows of a read-only SQL query on the server's catalog (SQLite file or PostgreSQL)."""
    import conftest

    env = conftest.scale_out_env(server.data_dir, server.log_dir.parent)
    if not env:
        import sqlite3

        con = sqlite3.connect(server.data_dir / "catalog.db")
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    out = subprocess.run(["psql", env["LIGHTBOX_CATALOG"], "-At", "-F", "\x1f", "-c", sql],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        rows.append(tuple(int(v) if v.lstrip("-").isdigit() else v for v in line.split("\x1f")))
    return rows


def find_document(server, ds, image_set_id):
    """The latest version's metadata document (embedded backend: catalog + blob directory)."""
    rows = catalog_rows(server, "SELECT metadata_key FROM image_set_versions WHERE datastore_id = '%s' "
                                "AND image_set_id = '%s' AND metadata_key IS NOT NULL ORDER BY version DESC LIMIT 1"
                        % (ds, image_set_id))
    assert rows, f"no metadata document for {image_set_id}"
    return json.loads(gzip.decompress((blob_root(server) / rows[0][0]).read_bytes()))


def reference_frames(path):
    import pydicom

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[None, ...]
    return ds, arr


def test_import_walkthrough_with_cli(server, corpus, tmp_path):
    import imagecodecs

    ds = make_datastore(server, "import-walkthrough")
    study = tmp_path / "study"
    (study / "nested" / "deeper").mkdir(parents=True)
    for i, name in enumerate(CORPUS_FILES):
        target = study / ("nested/deeper" if i % 3 == 0 else "nested" if i % 3 == 1 else ".")
        shutil.copy(corpus / name, target / name)
    (study / "notes.txt").write_text("not a DICOM file")
    (study / "empty.dcm").write_bytes(b"")
    truncated = (corpus / "CT_small.dcm").read_bytes()
    (study / "truncated.dcm").write_bytes(truncated[: len(truncated) // 2])

    run_aws(server, "s3", "mb", "s3://import-bucket")
    run_aws(server, "s3", "cp", "--recursive", str(study), "s3://import-bucket/in/")
    props, seen = start_and_wait(server, ds, "s3://import-bucket/in/", "s3://import-bucket/out/")
    assert props["jobStatus"] == "COMPLETED", props
    assert props["jobName"] == "py-import"
    assert props["inputS3Uri"] == "s3://import-bucket/in/"
    assert props["outputS3Uri"] == f"s3://import-bucket/out/{ds}-DicomImport-{props['jobId']}/"
    assert props["submittedAt"] <= props["endedAt"]

    manifest, lines = read_outputs(server, props, tmp_path / "out")
    summary = manifest["jobSummary"]
    assert set(summary) == {"jobId", "datastoreId", "inputS3Uri", "outputS3Uri", "successOutputS3Uri",
                            "failureOutputS3Uri", "warningsOutputS3Uri", "numberOfScannedFiles",
                            "numberOfImportedFiles", "numberOfFilesWithCustomerError",
                            "numberOfFilesWithServerError", "numberOfGeneratedImageSets", "imageSetsSummary"}
    assert summary["jobId"] == props["jobId"] and summary["datastoreId"] == ds
    assert summary["outputS3Uri"] == props["outputS3Uri"]
    assert summary["successOutputS3Uri"] == props["outputS3Uri"] + "SUCCESS/"
    assert summary["numberOfScannedFiles"] == len(CORPUS_FILES) + 3
    assert summary["numberOfFilesWithCustomerError"] == 3, lines["FAILURE"]
    assert summary["numberOfFilesWithServerError"] == 0, lines["FAILURE"]
    assert summary["numberOfImportedFiles"] == len(CORPUS_FILES), lines["FAILURE"]
    failed = {l["inputFile"]: l["exception"] for l in lines["FAILURE"]}
    assert set(failed) == {"in/notes.txt", "in/empty.dcm", "in/truncated.dcm"}
    for exc in failed.values():
        assert exc["exceptionType"] == "ValidationException" and exc["message"]
    assert len(lines["SUCCESS"]) == len(CORPUS_FILES)
    by_file = {}
    for l in lines["SUCCESS"]:
        assert set(l) == {"inputFile", "importResponse"}
        assert set(l["importResponse"]) == {"imageSetId", "isPrimary"}
        by_file[pathlib.PurePosixPath(l["inputFile"]).name] = l["importResponse"]
    # MR_small in three encodings is one SOP instance of one series: one primary image set.
    mr = {by_file[n]["imageSetId"] for n in ("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm")}
    assert len(mr) == 1
    sets = {s["imageSetId"]: s for s in summary["imageSetsSummary"]}
    assert summary["numberOfGeneratedImageSets"] == len(sets)
    for s in sets.values():
        assert set(s) == {"imageSetId", "imageSetVersion", "isPrimary", "numberOfMatchedSOPInstances"}
    assert sum(s["numberOfMatchedSOPInstances"] for s in sets.values()) == len(CORPUS_FILES)

    # Every frame: stored as HTJ2K, decodes (OpenJPH via imagecodecs) to the source pixels, and
    # its CRC-32 is the document's full-resolution checksum.
    checked = 0
    for name in CORPUS_FILES:
        response = by_file[name]
        doc = find_document(server, ds, response["imageSetId"])
        assert doc["SchemaVersion"] == "1.1" and doc["DatastoreID"] == ds
        assert doc["ImageSetID"] == response["imageSetId"]
        src, frames = reference_frames(corpus / name)
        inst = doc["Study"]["Series"][src.SeriesInstanceUID]["Instances"][src.SOPInstanceUID]
        assert inst["StoredTransferSyntaxUID"] == "1.2.840.10008.1.2.4.202"
        assert len(inst["ImageFrames"]) == len(frames), name
        for entry, want in zip(inst["ImageFrames"], frames):
            blob = blob_root(server) / "datastores" / ds / "frames" / entry["ID"]
            data = blob.read_bytes()
            assert entry["FrameSizeInBytes"] == len(data)
            got = imagecodecs.htj2k_decode(data)
            if got.ndim == 3 and got.shape[0] in (3, 4) and want.ndim == 3 and want.shape[-1] == got.shape[0]:
                got = np.moveaxis(got, 0, -1)
            if src.get("PhotometricInterpretation", "").startswith("YBR") and name not in LOSSLESS_SOURCES:
                continue
            assert got.shape == want.shape, name
            assert np.array_equal(got.astype(np.int64), want.astype(np.int64)), f"{name}: pixels differ"
            full = max(entry["PixelDataChecksumFromBaseToFullResolution"], key=lambda c: c["Width"])
            assert full["Width"] == want.shape[1] and full["Height"] == want.shape[0]
            native = np.ascontiguousarray(got.astype(got.dtype.newbyteorder("<")))
            assert zlib.crc32(native.tobytes()) == full["Checksum"], f"{name}: checksum"
            assert entry["MinPixelValue"] == int(want.min()) and entry["MaxPixelValue"] == int(want.max())
            checked += 1
    assert checked >= len(CORPUS_FILES)

    # Re-importing a series adds a version to its primary image set (IMPORTED, version 2).
    run_aws(server, "s3", "cp", str(corpus / "CT_small.dcm"), "s3://import-bucket/again/CT_small.dcm")
    props2, _ = start_and_wait(server, ds, "s3://import-bucket/again/", "s3://import-bucket/out/")
    assert props2["jobStatus"] == "COMPLETED"
    manifest2, lines2 = read_outputs(server, props2, tmp_path / "out2")
    (entry,) = manifest2["jobSummary"]["imageSetsSummary"]
    assert entry["imageSetId"] == by_file["CT_small.dcm"]["imageSetId"]
    assert entry["imageSetVersion"] == 2 and entry["isPrimary"] is True

    # Listing shows both jobs, newest first.
    listed = aws_json(server, "medical-imaging", "list-dicom-import-jobs", "--datastore-id", ds)["jobSummaries"]
    assert [j["jobId"] for j in listed] == [props2["jobId"], props["jobId"]]
    assert all(j["jobStatus"] == "COMPLETED" for j in listed)


def test_import_job_errors(server, tmp_path):
    client = server.client()
    ds = make_datastore(server, "import-errors")
    run_aws(server, "s3", "mb", "s3://errs")
    # A missing bucket ends the job FAILED with a message.
    props, _ = start_and_wait(server, ds, "s3://no-such-bucket/in/", "s3://errs/out/")
    assert props["jobStatus"] == "FAILED" and "does not exist" in props["message"]
    # A prefix with no objects ends FAILED too, and its manifest says so.
    props, _ = start_and_wait(server, ds, "s3://errs/empty/", "s3://errs/out/")
    assert props["jobStatus"] == "FAILED" and "no objects" in props["message"]
    manifest, lines = read_outputs(server, props, tmp_path / "o")
    assert manifest["jobSummary"]["numberOfImportedFiles"] == 0
    assert lines["FAILURE"][0]["exception"]["message"] == props["message"]
    # Unknown data store / job.
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_dicom_import_job(datastoreId=ds, jobId="0" * 32)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.start_dicom_import_job(datastoreId="1" * 32, dataAccessRoleArn=ROLE, clientToken="t",
                                      inputS3Uri="s3://errs/in/", outputS3Uri="s3://errs/out/")
    # Invalid URI and role ARN are ValidationExceptions naming the member.
    bad = run_aws(server, "medical-imaging", "start-dicom-import-job", "--datastore-id", ds,
                  "--input-s3-uri", "bucket/without-scheme/", "--output-s3-uri", "s3://errs/out/",
                  "--data-access-role-arn", ROLE, check=False)
    assert bad.returncode != 0 and "ValidationException" in bad.stderr and "inputS3Uri" in bad.stderr
    bad = run_aws(server, "medical-imaging", "start-dicom-import-job", "--datastore-id", ds,
                  "--input-s3-uri", "s3://errs/in/", "--output-s3-uri", "s3://errs/out/",
                  "--data-access-role-arn", "arn:aws:iam::1:role/x", check=False)
    assert bad.returncode != 0 and "dataAccessRoleArn" in bad.stderr
    # clientToken idempotency: same token + same request → same job; different request → conflict.
    a = client.start_dicom_import_job(datastoreId=ds, dataAccessRoleArn=ROLE, clientToken="tok-1",
                                      inputS3Uri="s3://errs/empty/", outputS3Uri="s3://errs/out/")
    b = client.start_dicom_import_job(datastoreId=ds, dataAccessRoleArn=ROLE, clientToken="tok-1",
                                      inputS3Uri="s3://errs/empty/", outputS3Uri="s3://errs/out/")
    assert a["jobId"] == b["jobId"]
    with pytest.raises(client.exceptions.ConflictException):
        client.start_dicom_import_job(datastoreId=ds, dataAccessRoleArn=ROLE, clientToken="tok-1",
                                      inputS3Uri="s3://errs/other/", outputS3Uri="s3://errs/out/")
    # boto3 paginator over jobs.
    pages = client.get_paginator("list_dicom_import_jobs").paginate(datastoreId=ds, PaginationConfig={"PageSize": 1})
    ids = [j["jobId"] for p in pages for j in p["jobSummaries"]]
    assert len(ids) == len(set(ids)) == 3


def test_lightbox_import_command(server, corpus, tmp_path):
    """`lightbox import DIR --datastore-id ID` uploads, runs the job and prints the summary."""
    from conftest import BIN

    ds = make_datastore(server, "import-command")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(corpus / "CT_small.dcm", folder / "sub" / "ct.dcm")
    shutil.copy(corpus / "emri_small.dcm", folder / "mr.dcm")
    (folder / "junk.bin").write_bytes(b"\x00" * 300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIGHTBOX_"))}
    proc = subprocess.run([str(BIN), "import", str(folder), "--datastore-id", ds, "--endpoint", server.url],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert "COMPLETED" in out
    assert "3 scanned, 2 imported, 1 failed (file problems)" in out, out
    assert "image sets: 2" in out, out
    assert "junk.bin: Not a DICOM file" in out, out
    # An unknown data store: a clear error and a failing exit code.
    proc = subprocess.run([str(BIN), "import", str(folder), "--datastore-id", "0" * 32, "--endpoint", server.url],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0 and "ResourceNotFoundException" in proc.stderr, proc.stderr


def test_sigkill_during_import_leaves_a_consistent_store(make_server, corpus, tmp_path):
    """SIGKILL while a job runs; after a restart the job ends FAILED with a truthful message, no
    image set stays LOCKED, and no blob is left that no record owns."""
    import signal

    srv = make_server(env={"LIGHTBOX_JOB_LEASE_MS": "1500", "LIGHTBOX_IMPORT_CONCURRENCY": "1"})
    ds = make_datastore(srv, "crash")
    study = tmp_path / "crash-study"
    study.mkdir()
    names = [n for n in CORPUS_FILES if n != "image_dfl.dcm"]
    for rep in range(8):
        for n in names:
            shutil.copy(corpus / n, study / f"{rep}-{n}")
    run_aws(srv, "s3", "mb", "s3://crash")
    run_aws(srv, "s3", "cp", "--recursive", "--only-show-errors", str(study), "s3://crash/in/")
    started = srv.client().start_dicom_import_job(datastoreId=ds, dataAccessRoleArn=ROLE, clientToken="crash-1",
                                                  inputS3Uri="s3://crash/in/", outputS3Uri="s3://crash/out/")
    job_id = started["jobId"]
    # Kill as soon as the job has stored something.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if glob.glob(str(blob_root(srv) / "datastores" / ds / "frames" / "*")):
            break
        time.sleep(0.01)
    srv.stop(sig=signal.SIGKILL)
    srv.start()
    client = srv.client()
    deadline = time.monotonic() + 120
    while True:
        props = client.get_dicom_import_job(datastoreId=ds, jobId=job_id)["jobProperties"]
        if props["jobStatus"] in ("COMPLETED", "FAILED"):
            break
        assert time.monotonic() < deadline, props
        time.sleep(0.1)
    print("crash test: job ended", props["jobStatus"])
    if props["jobStatus"] == "FAILED":
        assert "interrupted" in props["message"], props
    # Consistency: nothing LOCKED, nothing pending, every frame blob owned by a record and every
    # recorded frame present.
    time.sleep(0.5)
    assert catalog_rows(srv, "SELECT COUNT(*) FROM image_sets WHERE state = 'LOCKED'") == [(0,)]
    assert catalog_rows(srv, "SELECT COUNT(*) FROM image_set_versions WHERE state = 'LOCKED'") == [(0,)]
    assert catalog_rows(srv, "SELECT COUNT(*) FROM pending_blobs") == [(0,)]
    recorded = {r[0] for r in catalog_rows(srv, "SELECT blob_key FROM image_frames")}
    on_disk = {os.path.relpath(p, blob_root(srv)) for p in
               glob.glob(str(blob_root(srv) / "datastores" / ds / "frames" / "*"))}
    assert on_disk == recorded
    docs = {r[0] for r in catalog_rows(srv, "SELECT metadata_key FROM image_set_versions")}
    docs_on_disk = {os.path.relpath(p, blob_root(srv)) for p in
                    glob.glob(str(blob_root(srv) / "datastores" / ds / "metadata" / "*"))}
    assert docs_on_disk == docs
    # The manifest lists what was committed.
    manifest, lines = read_outputs(srv, props, tmp_path / "crash-out")
    committed = {r[0] for r in catalog_rows(srv, f"SELECT DISTINCT image_set_id FROM image_set_versions WHERE job_id = '{job_id}' AND workflow_status IN ('CREATED', 'IMPORTED')")}
    assert {s["imageSetId"] for s in manifest["jobSummary"]["imageSetsSummary"]} == committed


# Every corpus file that must fail, with the reason it fails (reviewed by hand: none of these is
# an importable SOP instance, or pydicom cannot read its pixels either).
CORPUS_FAILURES = {
    "DICOMDIR": "SOPInstanceUID does not exist",
    "DICOMDIR-bigEnd": "SOPInstanceUID does not exist",
    "DICOMDIR-empty.dcm": "SOPInstanceUID does not exist",
    "DICOMDIR-implicit": "SOPInstanceUID does not exist",
    "DICOMDIR-nooffset": "truncated",
    "DICOMDIR-nopatient": "SOPInstanceUID does not exist",
    "DICOMDIR-reordered": "SOPInstanceUID does not exist",
    "JPEG2000-embedded-sequence-delimiter.dcm": "frame 1",
    "JPEGLSNearLossless_08.dcm": "StudyInstanceUID does not exist",
    "JPEGLSNearLossless_16.dcm": "StudyInstanceUID does not exist",
    "MR_truncated.dcm": "truncated",
    "SC_rgb_jls_lossy_line.dcm": "StudyInstanceUID does not exist",
    "SC_rgb_jls_lossy_sample.dcm": "StudyInstanceUID does not exist",
    "UN_sequence.dcm": "truncated",
    "badVR.dcm": "NumberOfFrames is not a valid integer",
    "crayons.icc": "Not a DICOM file",
    "empty_charset_LEI.dcm": "SOPInstanceUID does not exist",
    "meta_missing_tsyntax.dcm": "TransferSyntaxUID does not exist",
    "nested_priv_SQ.dcm": "SOPInstanceUID does not exist",
    "no_meta_group_length.dcm": "SOPInstanceUID does not exist",
    "priv_SQ.dcm": "SOPInstanceUID does not exist",
    "rtplan.dump": "Not a DICOM file",
    "rtplan_truncated.dcm": "truncated",
    "rtstruct.dump": "Not a DICOM file",
}

LOSSY_SOURCES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.91",
                 "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.203"}


KEPT_AS_IS = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"}


def sop_of(ds):
    """SOPInstanceUID, or the file meta's MediaStorageSOPInstanceUID where the data set lacks it."""
    sop = ds.get("SOPInstanceUID") or ds.file_meta.get("MediaStorageSOPInstanceUID")
    return str(sop)


def decode_stored(data, ts):
    import imagecodecs

    if ts in ("1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203"):
        return imagecodecs.htj2k_decode(data)
    if ts in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"):
        return imagecodecs.jpeg2k_decode(data)
    if ts == "1.2.840.10008.1.2.4.50":
        return imagecodecs.jpeg8_decode(data)
    return None


def test_import_whole_pydicom_corpus(server, corpus, tmp_path):
    """The whole pydicom / pydicom-data corpus in one job: the expected files fail with their
    reasons, everything else imports, and every stored frame decodes (independent decoders) to
    pydicom's pixels — exactly for lossless sources — with matching checksums."""
    import pydicom

    ds = make_datastore(server, "corpus")
    files = sorted(p.name for p in corpus.iterdir() if p.name != "index.json")
    run_aws(server, "s3", "mb", "s3://corpus")
    run_aws(server, "s3", "cp", "--recursive", "--only-show-errors", "--exclude", "index.json", str(corpus),
            "s3://corpus/in/")
    props, _ = start_and_wait(server, ds, "s3://corpus/in/", "s3://corpus/out/")
    assert props["jobStatus"] == "COMPLETED", props
    manifest, lines = read_outputs(server, props, tmp_path / "out")
    failed = {pathlib.PurePosixPath(l["inputFile"]).name: l["exception"]["message"] for l in lines["FAILURE"]}
    assert set(failed) == set(CORPUS_FAILURES), sorted(set(failed) ^ set(CORPUS_FAILURES))
    for name, reason in CORPUS_FAILURES.items():
        assert reason in failed[name], (name, failed[name])
    summary = manifest["jobSummary"]
    assert summary["numberOfScannedFiles"] == len(files)
    assert summary["numberOfImportedFiles"] == len(files) - len(CORPUS_FAILURES)
    primaries = [s for s in summary["imageSetsSummary"] if s["isPrimary"]]
    assert primaries, "series get primary image sets"

    placed = {pathlib.PurePosixPath(l["inputFile"]).name: l["importResponse"] for l in lines["SUCCESS"]}
    # Files carrying the same SOP instance into one image set: the last one (key order) wins.
    survivor = {}
    for name in sorted(placed):
        src = pydicom.dcmread(corpus / name, force=True, stop_before_pixels=True)
        survivor[(placed[name]["imageSetId"], sop_of(src))] = name
    exact = lossy = undecodable = kept = 0
    for name, response in sorted(placed.items()):
        src = pydicom.dcmread(corpus / name, force=True)
        if "PixelData" not in src or survivor[(response["imageSetId"], sop_of(src))] != name:
            continue
        doc = find_document(server, ds, response["imageSetId"])
        inst = doc["Study"]["Series"][src.SeriesInstanceUID]["Instances"][sop_of(src)]
        # Compare in the colour space the document says the stored frames are in.
        src.pixel_array_options(as_rgb=inst["DICOM"].get("PhotometricInterpretation") == "RGB")
        try:
            frames = src.pixel_array
        except Exception:
            undecodable += 1
            continue
        n = int(getattr(src, "NumberOfFrames", 1) or 1)
        if n == 1:
            frames = frames[None, ...]
        source_ts = str(src.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in src.file_meta else ""
        stored_ts = inst["StoredTransferSyntaxUID"]
        assert len(inst["ImageFrames"]) == len(frames), name
        if stored_ts == source_ts and stored_ts in KEPT_AS_IS:
            # Kept as they are: the stored frames are the source's frame bitstreams.
            encoded = list(pydicom.encaps.generate_frames(src.PixelData, number_of_frames=n))
            for entry, want in zip(inst["ImageFrames"], encoded):
                data = (blob_root(server) / "datastores" / ds / "frames" / entry["ID"]).read_bytes()
                assert data.rstrip(b"\0") == want.rstrip(b"\0"), name
                kept += 1
            continue
        for entry, want in zip(inst["ImageFrames"], frames):
            data = (blob_root(server) / "datastores" / ds / "frames" / entry["ID"]).read_bytes()
            got = decode_stored(data, stored_ts)
            if got is None:
                undecodable += 1
                continue
            if got.ndim == 3 and want.ndim == 3 and got.shape[0] == want.shape[-1] and got.shape != want.shape:
                got = np.moveaxis(got, 0, -1)
            assert got.shape == want.shape, (name, got.shape, want.shape)
            diff = np.abs(got.astype(np.int64) - want.astype(np.int64)).max()
            if source_ts in LOSSY_SOURCES:
                assert diff <= 5, (name, diff)
                lossy += 1
            else:
                assert diff == 0, (name, diff)
                full = max(entry["PixelDataChecksumFromBaseToFullResolution"], key=lambda c: c["Width"])
                width_bytes = 1 if int(src.BitsStored) <= 8 else 2
                native = want.astype({1: np.uint8, 2: np.uint16}[width_bytes] if int(getattr(src, "PixelRepresentation", 0)) == 0 else {1: np.int8, 2: np.int16}[width_bytes])
                assert zlib.crc32(np.ascontiguousarray(native).astype(native.dtype.newbyteorder("<")).tobytes()) == full["Checksum"], name
                exact += 1
    print(f"corpus: {exact} frames exact, {lossy} lossy within tolerance, {kept} kept as they are, "
          f"{undecodable} not compared")
    assert exact >= 80 and kept >= 30


def test_import_walkthrough_with_boto3(server, corpus, tmp_path):
    """The same flow with boto3 only: s3 upload_file, start / get / list import jobs, read the
    outputs with get_object."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test", config=Config(s3={"addressing_style": "path"}))
    mi = server.client()
    ds = make_datastore(server, "boto3-flow")
    s3.create_bucket(Bucket="boto-flow")
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "emri_small.dcm"):
        s3.upload_file(str(corpus / name), "boto-flow", f"dicom/in/{name}")
    job = mi.start_dicom_import_job(datastoreId=ds, jobName="boto3", dataAccessRoleArn=ROLE,
                                    inputS3Uri="s3://boto-flow/dicom/in/", outputS3Uri="s3://boto-flow/dicom/out/")
    assert job["jobStatus"] == "SUBMITTED"
    deadline = time.monotonic() + 120
    while True:
        props = mi.get_dicom_import_job(datastoreId=ds, jobId=job["jobId"])["jobProperties"]
        if props["jobStatus"] in ("COMPLETED", "FAILED"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert props["jobStatus"] == "COMPLETED"
    # boto3 parses timestamps into datetimes.
    assert props["endedAt"] >= props["submittedAt"]
    out = props["outputS3Uri"][len("s3://boto-flow/"):]
    manifest = json.loads(s3.get_object(Bucket="boto-flow", Key=out + "job-output-manifest.json")["Body"].read())
    assert manifest["jobSummary"]["numberOfImportedFiles"] == 3
    assert manifest["jobSummary"]["numberOfGeneratedImageSets"] == 3
    success = s3.get_object(Bucket="boto-flow", Key=out + "SUCCESS/success.ndjson")["Body"].read().decode()
    assert len(success.splitlines()) == 3
    listed = mi.list_dicom_import_jobs(datastoreId=ds, jobStatus="COMPLETED")["jobSummaries"]
    assert [j["jobId"] for j in listed] == [job["jobId"]]
    assert listed[0]["jobName"] == "boto3"
