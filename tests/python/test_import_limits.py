"""Import limits and hostile input: every limit of an import job is enforced (files, total size,
nesting, per-file size, sequence depth) with a clear failure line or job message, and a data
store created with losslessStorageFormat JPEG_2000_LOSSLESS stores JPEG 2000 lossless frames."""

import pathlib
import shutil

import numpy as np
import pytest

from test_import import (ROLE, blob_root, find_document, make_datastore, read_outputs,  # noqa: F401
                         run_aws, start_and_wait)


def deeply_nested(path, depth):
    """A valid CT-like instance whose data set nests `depth` sequences."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(corpus_file("CT_small.dcm"))
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = inner.ContentSequence
    ds.save_as(path)


_CORPUS = {}


def corpus_file(name):
    return _CORPUS["dir"] / name


@pytest.fixture(autouse=True)
def _remember_corpus(corpus):
    _CORPUS["dir"] = corpus


def test_per_file_limits_are_failure_lines(make_server, corpus, tmp_path):
    srv = make_server(env={"LIGHTBOX_IMPORT_MAX_FILE_BYTES": "100000"})
    ds = make_datastore(srv, "limits")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(corpus / "CT_small.dcm", folder / "ok.dcm")  # 39 KB
    shutil.copy(corpus / "emri_small.dcm", folder / "ok2.dcm")
    (folder / "big.dcm").write_bytes(b"\0" * 100001)
    deeply_nested(folder / "deep.dcm", 40)
    deeply_nested(folder / "nested-ok.dcm", 5)
    run_aws(srv, "s3", "mb", "s3://lim")
    run_aws(srv, "s3", "cp", "--recursive", "--only-show-errors", str(folder), "s3://lim/in/")
    props, _ = start_and_wait(srv, ds, "s3://lim/in/", "s3://lim/out/")
    assert props["jobStatus"] == "COMPLETED", props
    manifest, lines = read_outputs(srv, props, tmp_path / "o")
    failed = {pathlib.PurePosixPath(l["inputFile"]).name: l["exception"]["message"] for l in lines["FAILURE"]}
    assert set(failed) == {"big.dcm", "deep.dcm"}, failed
    assert "100000 bytes" in failed["big.dcm"]
    assert "nest" in failed["deep.dcm"].lower() or "depth" in failed["deep.dcm"].lower(), failed["deep.dcm"]
    assert manifest["jobSummary"]["numberOfImportedFiles"] == 3


@pytest.mark.parametrize("env,files,message", [
    ({"LIGHTBOX_IMPORT_MAX_FILES": "3"}, 4, "more than 3 files"),
    ({"LIGHTBOX_IMPORT_MAX_TOTAL_BYTES": "50000"}, 2, "more than 50000 bytes"),
    ({"LIGHTBOX_IMPORT_MAX_NESTED_FOLDERS": "2"}, 3, "more than 2 nested folders"),
])
def test_job_limits_fail_the_job(make_server, corpus, tmp_path, env, files, message):
    srv = make_server(env=env)
    ds = make_datastore(srv, "job-limits")
    run_aws(srv, "s3", "mb", "s3://jlim")
    for i in range(files):
        run_aws(srv, "s3", "cp", str(corpus / "CT_small.dcm"), f"s3://jlim/in/d{i}/f{i}.dcm")
    props, _ = start_and_wait(srv, ds, "s3://jlim/in/", "s3://jlim/out/")
    assert props["jobStatus"] == "FAILED" and message in props["message"], props
    # Nothing was imported.
    manifest, _ = read_outputs(srv, props, tmp_path / "o")
    assert manifest["jobSummary"]["imageSetsSummary"] == []


def test_jpeg_2000_lossless_data_store(server, corpus, tmp_path):
    import imagecodecs
    import pydicom

    ds = make_datastore(server, "j2k", fmt="JPEG_2000_LOSSLESS")
    run_aws(server, "s3", "mb", "s3://j2k")
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "US1_UNCR.dcm"):
        run_aws(server, "s3", "cp", str(corpus / name), f"s3://j2k/in/{name}")
    props, _ = start_and_wait(server, ds, "s3://j2k/in/", "s3://j2k/out/")
    assert props["jobStatus"] == "COMPLETED", props
    _, lines = read_outputs(server, props, tmp_path / "o")
    assert len(lines["SUCCESS"]) == 3, lines
    for l in lines["SUCCESS"]:
        name = pathlib.PurePosixPath(l["inputFile"]).name
        src = pydicom.dcmread(corpus / name)
        doc = find_document(server, ds, l["importResponse"]["imageSetId"])
        inst = doc["Study"]["Series"][src.SeriesInstanceUID]["Instances"][src.SOPInstanceUID]
        assert inst["StoredTransferSyntaxUID"] == "1.2.840.10008.1.2.4.90"
        frame = inst["ImageFrames"][0]
        data = (blob_root(server) / "datastores" / ds / "frames" / frame["ID"]).read_bytes()
        got = imagecodecs.jpeg2k_decode(data)
        want = src.pixel_array
        if want.ndim == 4:
            want = want[0]
        if int(getattr(src, "NumberOfFrames", 1) or 1) > 1:
            want = want[0]
        assert np.array_equal(got.astype(np.int64), want.astype(np.int64)), name


def test_memory_budget_and_metadata_size_are_failure_lines(make_server, corpus, tmp_path):
    """A file needing more memory than the node's import budget, and an image set whose metadata
    document would exceed its limit, are failure lines naming the limit; the job completes."""
    big = max((p for p in corpus.iterdir() if p.suffix == ".dcm"), key=lambda p: p.stat().st_size)
    assert big.stat().st_size * 3 > 1 << 20
    srv = make_server(env={"LIGHTBOX_IMPORT_MEMORY_BUDGET": str(1 << 20),
                           "LIGHTBOX_IMPORT_MAX_METADATA_BYTES": "2000"})
    ds = make_datastore(srv, "budget")
    run_aws(srv, "s3", "mb", "s3://budget")
    run_aws(srv, "s3", "cp", str(big), "s3://budget/in/big.dcm")
    run_aws(srv, "s3", "cp", str(corpus / "CT_small.dcm"), "s3://budget/in/ct.dcm")
    props, _ = start_and_wait(srv, ds, "s3://budget/in/", "s3://budget/out/")
    assert props["jobStatus"] == "COMPLETED", props
    manifest, lines = read_outputs(srv, props, tmp_path / "o")
    failed = {pathlib.PurePosixPath(l["inputFile"]).name: l["exception"]["message"] for l in lines["FAILURE"]}
    assert "--import-memory-budget" in failed["big.dcm"], failed
    assert "metadata would exceed 2000 bytes" in failed["ct.dcm"], failed
    assert manifest["jobSummary"]["imageSetsSummary"] == []


def test_input_owner_account_must_match(server, tmp_path):
    ds = make_datastore(server, "owner")
    run_aws(server, "s3", "mb", "s3://owner-out")
    client = server.client()
    job = client.start_dicom_import_job(datastoreId=ds, dataAccessRoleArn=ROLE, inputS3Uri="s3://owner-out/in/",
                                        outputS3Uri="s3://owner-out/out/", inputOwnerAccountId="123456789012")
    import time

    deadline = time.monotonic() + 60
    while True:
        props = client.get_dicom_import_job(datastoreId=ds, jobId=job["jobId"])["jobProperties"]
        if props["jobStatus"] in ("COMPLETED", "FAILED"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert props["jobStatus"] == "FAILED"
    assert "inputOwnerAccountId" in props["message"]
