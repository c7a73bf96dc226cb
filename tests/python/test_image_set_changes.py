"""Image set changes (issue #7) through real clients against the real binary: UpdateImageSetMetadata,
CopyImageSet and DeleteImageSet with the AWS CLI (the developer guide's walkthroughs) and boto3,
on image sets made by a real import job of pydicom corpus files. Every change is checked on the
metadata documents (gunzipped JSON) before and after, on the version history, on GetImageFrame
and on the found-by columns (SearchImageSets). The contract is docs/compatibility.md, "Image set
changes". Runs on both backends (LIGHTBOX_TEST_BACKEND=embedded | postgres-s3). One server and one
imported data store are shared by the module; every test changes only image sets of its own (the
primary image sets it mutates are not touched by any other test; copies are made per test). The
delete test has its own data store (it deletes it), the crash test its own server (it kills it).

The AWS CLI here is v1: it has no `--cli-binary-format` (v2 only) and always treats blob input as
raw bytes that it base64-encodes, which is exactly what v2 sends with `raw-in-base64-out`; the flag
is added only when the CLI is v2. A v1 client error exits 255 with "An error occurred (Code) when
calling the Op operation: message" on stderr."""

import copy
import functools
import glob
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest
from botocore.exceptions import ClientError

from conftest import wait_status
from test_image_set_reads import boto3_import, srv  # noqa: F401 (fixture)
from test_import import AWS, blob_root, catalog_rows, make_datastore, read_outputs, run_aws, start_and_wait

# Corpus files imported (by the AWS CLI) into the shared data store, one primary image set each,
# except the three SC_rgb* files (three SOP instances of one series: one image set) and MR_small /
# MR_small_series2 (two series of one study: two primary image sets of that study).
CORPUS = [
    "CT_small.dcm",  # test_cli_update_walkthrough_on_a_primary_image_set mutates it
    "SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_gdcm_KY.dcm",  # copied, never changed
    "MR_small.dcm",  # test_include_study_image_sets mutates it (and its second series)
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # primary-image-set rules (all refused: never changed)
    "image_dfl.dcm",  # copied, never changed
    "rtdose_1frame.dcm",  # test_promote_to_primary promotes an instance into it
]
MR_SERIES2 = "MR_small_series2.dcm"  # MR_small.dcm with another series (made by the fixture)
SC_FILES = ("SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_gdcm_KY.dcm")

ERROR_RE = re.compile(r"An error occurred \((\w+)\) when calling the (\w+) operation: (.*)", re.S)
ARCHIVE_OFFSET = 31 * 86400
NF, BAD, CONFLICT = ("ResourceNotFoundException", 404), ("ValidationException", 400), ("ConflictException", 409)


# --- module fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(srv, corpus, tmp_path_factory):  # noqa: F811
    """The shared data store: the corpus files (plus a second series of MR_small's study) imported
    with the AWS CLI. Returns ids by file name and each file's UIDs."""
    import pydicom

    root = tmp_path_factory.mktemp("changes-store")
    ds = make_datastore(srv, "changes")
    study = root / "study"
    study.mkdir()
    for name in CORPUS:
        shutil.copy(corpus / name, study / name)
    mr2 = pydicom.dcmread(corpus / "MR_small.dcm")
    mr2.SeriesInstanceUID = mr2.SeriesInstanceUID + ".2"
    mr2.SOPInstanceUID = mr2.SOPInstanceUID + ".2"
    mr2.file_meta.MediaStorageSOPInstanceUID = mr2.SOPInstanceUID
    mr2.SeriesNumber = "2"
    mr2.save_as(study / MR_SERIES2)
    run_aws(srv, "s3", "mb", "s3://changes")
    run_aws(srv, "s3", "cp", "--recursive", "--only-show-errors", str(study), "s3://changes/corpus/")
    props, _ = start_and_wait(srv, ds, "s3://changes/corpus/", "s3://changes/corpus-out/")
    assert props["jobStatus"] == "COMPLETED", props
    _, lines = read_outputs(srv, props, root / "out")
    assert lines["FAILURE"] == [], lines["FAILURE"]
    sets = {l["inputFile"].rsplit("/", 1)[-1]: l["importResponse"]["imageSetId"] for l in lines["SUCCESS"]}
    assert set(sets) == set(CORPUS) | {MR_SERIES2}
    assert len({sets[n] for n in SC_FILES}) == 1
    assert sets["MR_small.dcm"] != sets[MR_SERIES2]
    uids = {}
    for name in sets:
        src = pydicom.dcmread(study / name, stop_before_pixels=True)
        uids[name] = {"study": str(src.StudyInstanceUID), "series": str(src.SeriesInstanceUID),
                      "sop": str(src.SOPInstanceUID)}
    return {"ds": ds, "sets": sets, "uids": uids}


# --- helpers ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def cli_binary_format():
    """`--cli-binary-format raw-in-base64-out` for AWS CLI v2; nothing for v1 (which has no such
    option and always base64-encodes raw blob input)."""
    out = subprocess.run([AWS, "--version"], capture_output=True, text=True)
    return ("--cli-binary-format", "raw-in-base64-out") if (out.stdout + out.stderr).startswith("aws-cli/2") else ()


def cli_json(server, *args):
    proc = run_aws(server, *args, "--output", "json")
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def cli_error(server, *args):
    """(code, message) of a CLI call that must fail with a service error (exit code 255)."""
    proc = run_aws(server, *args, check=False)
    assert proc.returncode == 255, f"{args}: exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    m = ERROR_RE.search(proc.stderr)
    assert m, proc.stderr
    return m.group(1), m.group(3).strip()


def expect_error(code, status, fn, *args, **kw):
    """The ClientError of fn(*args, **kw), which must be `code` with HTTP `status` and a message."""
    with pytest.raises(ClientError) as e:
        fn(*args, **kw)
    err = e.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (code, status), \
        (getattr(fn, "__name__", fn), args, kw, err["Error"])
    assert err["Error"]["Message"]
    return e.value


def gunzip_json(data):
    assert data[:2] == b"\x1f\x8b", "metadata is gzip"
    return json.loads(gzip.decompress(data))


def metadata(client, ds, image_set, version=None):
    kw = {"versionId": version} if version else {}
    resp = client.get_image_set_metadata(datastoreId=ds, imageSetId=image_set, **kw)
    assert resp["contentType"] == "application/json" and resp["contentEncoding"] == "gzip"
    return gunzip_json(resp["imageSetMetadataBlob"].read())


def cli_metadata(server, ds, image_set, path, version=None):
    extra = ["--version-id", version] if version else []
    out = cli_json(server, "medical-imaging", "get-image-set-metadata", "--datastore-id", ds,
                   "--image-set-id", image_set, *extra, str(path))
    assert out == {"contentType": "application/json", "contentEncoding": "gzip"}, out
    return gunzip_json(path.read_bytes())


def instances_of(doc):
    return {sop: inst for series in doc["Study"]["Series"].values() for sop, inst in series["Instances"].items()}


def frame_ids(doc):
    return {sop: [f["ID"] for f in inst["ImageFrames"]] for sop, inst in instances_of(doc).items()}


def as_image_set(doc, image_set):
    """`doc` as the document of another image set (a copy): only ImageSetID differs."""
    out = copy.deepcopy(doc)
    out["ImageSetID"] = image_set
    return out


def wait_unlocked(client, ds, image_set, timeout=30.0):
    """GetImageSet once the image set is no longer LOCKED."""
    deadline = time.monotonic() + timeout
    while True:
        props = client.get_image_set(datastoreId=ds, imageSetId=image_set)
        if props["imageSetState"] != "LOCKED":
            return props
        assert time.monotonic() < deadline, f"{image_set} still LOCKED / {props['imageSetWorkflowStatus']}"
        time.sleep(0.05)


def versions(client, ds, image_set):
    return client.list_image_set_versions(datastoreId=ds, imageSetId=image_set)["imageSetPropertiesList"]


def latest_version(client, ds, image_set):
    return client.get_image_set(datastoreId=ds, imageSetId=image_set)["versionId"]


def doc_bytes(doc):
    return json.dumps(doc).encode()


def update(client, ds, image_set, latest, updatable=None, removable=None, **kw):
    """UpdateImageSetMetadata with raw JSON bytes (boto3 base64-encodes the blobs)."""
    dicom = {}
    if updatable is not None:
        dicom["updatableAttributes"] = updatable if isinstance(updatable, bytes) else doc_bytes(updatable)
    if removable is not None:
        dicom["removableAttributes"] = removable if isinstance(removable, bytes) else doc_bytes(removable)
    return client.update_image_set_metadata(datastoreId=ds, imageSetId=image_set, latestVersionId=latest,
                                            updateImageSetMetadataUpdates={"DICOMUpdates": dicom}, **kw)


def fresh_copy(client, ds, source, copiable=None):
    """A new non-primary copy of `source` (its latest version), waited for: its id."""
    info = {"latestVersionId": latest_version(client, ds, source)}
    if copiable is not None:
        info["DICOMCopies"] = {"copiableAttributes": json.dumps(copiable)}
    resp = client.copy_image_set(datastoreId=ds, sourceImageSetId=source,
                                 copyImageSetInformation={"sourceImageSet": info})
    dest = resp["destinationImageSetProperties"]["imageSetId"]
    done = wait_unlocked(client, ds, dest)
    assert (done["imageSetState"], done["imageSetWorkflowStatus"]) == ("ACTIVE", "COPIED"), done
    wait_unlocked(client, ds, source)
    return dest


def search_eq(client, ds, **value):
    crit = {"filters": [{"operator": "EQUAL", "values": [value]}]}
    return client.search_image_sets(datastoreId=ds, searchCriteria=crit)["imageSetsMetadataSummaries"]


def frame_served(client, ds, image_set, frame_id):
    """True if GetImageFrame serves the frame for the image set, False on ResourceNotFound."""
    try:
        body = client.get_image_frame(datastoreId=ds, imageSetId=image_set,
                                      imageFrameInformation={"imageFrameId": frame_id})["imageFrameBlob"].read()
    except ClientError as e:
        assert e.response["Error"]["Code"] == "ResourceNotFoundException", e.response
        return False
    assert body
    return True


def blob_names(directory):
    """Names of the blobs in a blob store directory (either backend; s3s-fs's hidden sidecar
    files are not blobs)."""
    return {os.path.basename(p) for p in glob.glob(str(directory / "*"))}


def arn(ds, image_set):
    return f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{ds}/imageset/{image_set}"


# --- 1. the AWS CLI walkthroughs ----------------------------------------------------------------


def test_cli_update_walkthrough_on_a_primary_image_set(srv, store, tmp_path):
    """update-image-set-metadata on CT_small's primary image set: set a Study attribute (v2),
    remove it (v3), revert to v1 (v4); a Patient attribute of a primary image set and a stale
    --latest-version-id are refused; every version's document stays readable."""
    client = srv.client()
    ds, ct = store["ds"], store["sets"]["CT_small.dcm"]
    mi = ["medical-imaging"]
    where = ["--datastore-id", ds, "--image-set-id", ct]
    before = cli_json(srv, *mi, "get-image-set", *where)
    assert (before["versionId"], before["imageSetState"], before["imageSetWorkflowStatus"]) == \
        ("1", "ACTIVE", "CREATED")
    doc1 = cli_metadata(srv, ds, ct, tmp_path / "v1.json.gz")
    assert doc1["Study"]["DICOM"]["StudyDescription"] == "e+1"
    assert doc1["Patient"]["DICOM"]["PatientName"] == "CompressedSamples^CT1"

    def cli_update(latest, updates, *extra):
        return cli_json(srv, *mi, "update-image-set-metadata", *where, "--latest-version-id", latest,
                        *cli_binary_format(), "--update-image-set-metadata-updates", json.dumps(updates), *extra)

    def dicom_updates(kind, attrs):
        return {"DICOMUpdates": {kind: json.dumps(attrs)}}

    # v2: a Study-level attribute changed (the developer guide's form, SchemaVersion as a number).
    resp = cli_update("1", dicom_updates("updatableAttributes",
                                         {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "CHEST"}}}))
    assert resp["latestVersionId"] == "2", resp
    assert (resp["imageSetState"], resp["imageSetWorkflowStatus"]) == ("LOCKED", "UPDATING"), resp
    assert resp["datastoreId"] == ds and resp["imageSetId"] == ct
    assert resp["createdAt"] == before["createdAt"] and resp["updatedAt"] >= before["updatedAt"]
    done = wait_unlocked(client, ds, ct)
    assert (done["versionId"], done["imageSetState"], done["imageSetWorkflowStatus"]) == ("2", "ACTIVE", "UPDATED")
    assert done["isPrimary"] is True and "message" not in done and "overrides" not in done
    doc2 = cli_metadata(srv, ds, ct, tmp_path / "v2.json.gz")
    want2 = copy.deepcopy(doc1)
    want2["Study"]["DICOM"]["StudyDescription"] = "CHEST"
    assert doc2 == want2

    # v3: the attribute removed (its value in removableAttributes is ignored); "1.1" as a string.
    resp = cli_update("2", dicom_updates("removableAttributes",
                                         {"SchemaVersion": "1.1", "Study": {"DICOM": {"StudyDescription": "x"}}}))
    assert resp["latestVersionId"] == "3" and resp["imageSetState"] == "LOCKED"
    assert wait_unlocked(client, ds, ct)["imageSetWorkflowStatus"] == "UPDATED"
    doc3 = cli_metadata(srv, ds, ct, tmp_path / "v3.json.gz")
    want3 = copy.deepcopy(doc1)
    del want3["Study"]["DICOM"]["StudyDescription"]
    assert doc3 == want3

    # Refused without a new version: Patient-level attributes of a primary image set (the
    # message names the attribute, never the value), a stale version, a missing image set.
    code, msg = cli_error(srv, *mi, "update-image-set-metadata", *where, "--latest-version-id", "3",
                          *cli_binary_format(), "--update-image-set-metadata-updates", json.dumps(dicom_updates(
                              "updatableAttributes", {"SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientName": "MX^MX"}}})))
    assert code == "ValidationException" and "PatientName" in msg and "MX^MX" not in msg, msg
    code, msg = cli_error(srv, *mi, "update-image-set-metadata", *where, "--latest-version-id", "1",
                          *cli_binary_format(), "--update-image-set-metadata-updates", json.dumps(dicom_updates(
                              "updatableAttributes", {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "A"}}})))
    assert code == "ConflictException", msg
    code, _ = cli_error(srv, *mi, "update-image-set-metadata", "--datastore-id", ds, "--image-set-id", "0" * 32,
                        "--latest-version-id", "1", "--update-image-set-metadata-updates", '{"revertToVersionId":"1"}')
    assert code == "ResourceNotFoundException"

    # v4: revert to version 1.
    resp = cli_update("3", {"revertToVersionId": "1"})
    assert resp["latestVersionId"] == "4" and resp["imageSetWorkflowStatus"] == "UPDATING"
    assert wait_unlocked(client, ds, ct)["imageSetWorkflowStatus"] == "UPDATED"
    assert cli_metadata(srv, ds, ct, tmp_path / "v4.json.gz") == doc1

    listed = cli_json(srv, *mi, "list-image-set-versions", *where)["imageSetPropertiesList"]
    assert [v["versionId"] for v in listed] == ["4", "3", "2", "1"]
    assert [v["ImageSetWorkflowStatus"] for v in listed] == ["UPDATED", "UPDATED", "UPDATED", "CREATED"]
    assert {v["imageSetState"] for v in listed} == {"ACTIVE"}
    assert {v["createdAt"] for v in listed} == {before["createdAt"]}
    assert listed[3]["updatedAt"] <= listed[2]["updatedAt"] <= listed[1]["updatedAt"] <= listed[0]["updatedAt"]
    # History: every version's document as it was.
    assert cli_metadata(srv, ds, ct, tmp_path / "h2.json.gz", version="2") == want2
    assert cli_metadata(srv, ds, ct, tmp_path / "h3.json.gz", version="3") == want3
    assert cli_metadata(srv, ds, ct, tmp_path / "h1.json.gz", version="1") == doc1
    # Frames did not change: the frame is served by the latest version.
    (fid,) = frame_ids(doc1)[store["uids"]["CT_small.dcm"]["sop"]]
    assert frame_served(client, ds, ct, fid)
    summary = search_eq(client, ds, DICOMSeriesInstanceUID=store["uids"]["CT_small.dcm"]["series"])
    assert [(s["imageSetId"], s["version"]) for s in summary] == [(ct, 4)]


def test_cli_copy_then_update_patient_name(srv, store, tmp_path):
    """The developer guide's flow: copy-image-set (whole source, no destination) makes a non-primary
    image set, version 1; then update-image-set-metadata sets PatientName MX^MX on the copy."""
    client = srv.client()
    ds, sc = store["ds"], store["sets"]["SC_rgb.dcm"]
    mi = ["medical-imaging"]
    src_doc = cli_metadata(srv, ds, sc, tmp_path / "src.json.gz")
    assert set(instances_of(src_doc)) == {store["uids"][n]["sop"] for n in SC_FILES}
    src_before = client.get_image_set(datastoreId=ds, imageSetId=sc)
    assert src_before["versionId"] == "1"

    resp = cli_json(srv, *mi, "copy-image-set", "--datastore-id", ds, "--source-image-set-id", sc,
                    "--copy-image-set-information", '{"sourceImageSet":{"latestVersionId":"1"}}')
    assert resp["datastoreId"] == ds
    dst, src = resp["destinationImageSetProperties"], resp["sourceImageSetProperties"]
    copy_id = dst["imageSetId"]
    assert re.fullmatch(r"[0-9a-z]{32}", copy_id) and copy_id != sc
    assert (dst["latestVersionId"], dst["imageSetState"], dst["imageSetWorkflowStatus"]) == ("1", "LOCKED", "COPYING")
    assert dst["imageSetArn"] == arn(ds, copy_id)
    assert (src["imageSetId"], src["latestVersionId"], src["imageSetState"], src["imageSetWorkflowStatus"]) == \
        (sc, "1", "LOCKED", "COPYING_WITH_READ_ONLY_ACCESS")
    assert src["imageSetArn"] == arn(ds, sc)

    done = wait_unlocked(client, ds, copy_id)
    assert (done["versionId"], done["imageSetState"], done["imageSetWorkflowStatus"]) == ("1", "ACTIVE", "COPIED")
    assert done["isPrimary"] is False
    # The source: back to ACTIVE with its previous status, no new version.
    src_after = wait_unlocked(client, ds, sc)
    assert (src_after["versionId"], src_after["imageSetState"], src_after["imageSetWorkflowStatus"]) == \
        ("1", "ACTIVE", "CREATED")
    assert [v["versionId"] for v in versions(client, ds, sc)] == ["1"]
    shown = cli_json(srv, *mi, "get-image-set", "--datastore-id", ds, "--image-set-id", copy_id)
    assert shown["imageSetWorkflowStatus"] == "COPIED" and shown["isPrimary"] is False
    copy_doc = cli_metadata(srv, ds, copy_id, tmp_path / "copy.json.gz")
    assert copy_doc == as_image_set(src_doc, copy_id), "a whole copy is the source's document"
    # Frames are shared: the copy serves the source's frame ids with the same bytes.
    for sop, ids in frame_ids(copy_doc).items():
        for fid in ids:
            out = cli_json(srv, *mi, "get-image-frame", "--datastore-id", ds, "--image-set-id", copy_id,
                           "--image-frame-information", f"imageFrameId={fid}", str(tmp_path / "f.bin"))
            assert out["contentType"]
            original = client.get_image_frame(datastoreId=ds, imageSetId=sc,
                                              imageFrameInformation={"imageFrameId": fid})["imageFrameBlob"].read()
            assert (tmp_path / "f.bin").read_bytes() == original, sop

    # A stale source version is a ConflictException.
    code, _ = cli_error(srv, *mi, "copy-image-set", "--datastore-id", ds, "--source-image-set-id", sc,
                        "--copy-image-set-information", '{"sourceImageSet":{"latestVersionId":"2"}}')
    assert code == "ConflictException"

    # The developer guide's update, verbatim, on the (non-primary) copy.
    resp = cli_json(srv, *mi, "update-image-set-metadata", "--datastore-id", ds, "--image-set-id", copy_id,
                    "--latest-version-id", "1", *cli_binary_format(), "--update-image-set-metadata-updates",
                    '{"DICOMUpdates":{"updatableAttributes":'
                    '"{\\"SchemaVersion\\":1.1,\\"Patient\\":{\\"DICOM\\":{\\"PatientName\\":\\"MX^MX\\"}}}"}}')
    assert (resp["latestVersionId"], resp["imageSetState"], resp["imageSetWorkflowStatus"]) == \
        ("2", "LOCKED", "UPDATING")
    assert wait_unlocked(client, ds, copy_id)["imageSetWorkflowStatus"] == "UPDATED"
    updated = cli_metadata(srv, ds, copy_id, tmp_path / "copy2.json.gz")
    want = copy.deepcopy(copy_doc)
    want["Patient"]["DICOM"]["PatientName"] = "MX^MX"
    assert updated == want
    assert metadata(client, ds, sc) == src_doc, "the source is unchanged"
    # Found-by columns follow the new document.
    found = {s["imageSetId"]: s for s in search_eq(client, ds, DICOMSeriesInstanceUID=store["uids"]["SC_rgb.dcm"]["series"])}
    assert {sc, copy_id} <= set(found)
    assert found[copy_id]["DICOMTags"]["DICOMPatientName"] == "MX^MX" and found[copy_id]["version"] == 2
    assert found[copy_id]["isPrimary"] is False
    assert found[sc]["DICOMTags"]["DICOMPatientName"] == "Lestrade^G" and found[sc]["version"] == 1


def test_cli_delete_image_sets_then_data_store(srv, corpus, tmp_path):
    """delete-image-set on a copy, then on its source, then on a second copy (own data store):
    DELETED with deletedAt, history still listed, documents and frames ResourceNotFound, search
    hides it, tags gone; shared frames stay while any image set refers to them (either way round),
    and their blobs are collected once none does; the data store can be deleted only after its
    image sets."""
    client = srv.client()
    mi = ["medical-imaging"]
    ds = make_datastore(srv, "changes-delete")
    placed, _ = boto3_import(srv, ds, "changes-delete", {"emri_small.dcm": corpus / "emri_small.dcm"}, "d")
    source = placed["emri_small.dcm"]["imageSetId"]
    src_doc = metadata(client, ds, source)
    (fids,) = frame_ids(src_doc).values()
    assert len(fids) == 10
    dup = fresh_copy(client, ds, source)
    keeper = fresh_copy(client, ds, source)
    client.tag_resource(resourceArn=arn(ds, dup), tags={"team": "radiology"})
    frames_dir = blob_root(srv) / "datastores" / ds / "frames"
    docs_dir = blob_root(srv) / "datastores" / ds / "metadata"
    assert blob_names(frames_dir) == set(fids)
    docs_before = blob_names(docs_dir)
    assert len(docs_before) == 3, "the source's and the two copies' documents"

    resp = cli_json(srv, *mi, "delete-image-set", "--datastore-id", ds, "--image-set-id", dup)
    assert resp == {"datastoreId": ds, "imageSetId": dup, "imageSetState": "LOCKED",
                    "imageSetWorkflowStatus": "DELETING"}, resp
    done = wait_unlocked(client, ds, dup)
    assert (done["imageSetState"], done["imageSetWorkflowStatus"], done["versionId"]) == ("DELETED", "DELETED", "1")
    assert done["deletedAt"] >= done["createdAt"]
    shown = cli_json(srv, *mi, "get-image-set", "--datastore-id", ds, "--image-set-id", dup)
    assert shown["imageSetState"] == "DELETED" and shown["deletedAt"]
    listed = cli_json(srv, *mi, "list-image-set-versions", "--datastore-id", ds, "--image-set-id", dup)
    (only,) = listed["imageSetPropertiesList"]
    assert (only["versionId"], only["imageSetState"], only["ImageSetWorkflowStatus"]) == ("1", "DELETED", "DELETED")
    assert only["deletedAt"]
    for extra in ([], ["--version-id", "1"]):
        code, _ = cli_error(srv, *mi, "get-image-set-metadata", "--datastore-id", ds, "--image-set-id", dup,
                            *extra, str(tmp_path / "gone.json.gz"))
        assert code == "ResourceNotFoundException"
    code, _ = cli_error(srv, *mi, "get-image-frame", "--datastore-id", ds, "--image-set-id", dup,
                        "--image-frame-information", f"imageFrameId={fids[0]}", str(tmp_path / "gone.bin"))
    assert code == "ResourceNotFoundException"
    expect_error(*NF, client.get_image_set_metadata, datastoreId=ds, imageSetId=dup)
    # Writes to a DELETED image set are ConflictExceptions.
    code, _ = cli_error(srv, *mi, "delete-image-set", "--datastore-id", ds, "--image-set-id", dup)
    assert code == "ConflictException"
    expect_error(*CONFLICT, update, client, ds, dup, "1",
                 {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "late"}}})
    expect_error(*CONFLICT, client.copy_image_set, datastoreId=ds, sourceImageSetId=dup,
                 copyImageSetInformation={"sourceImageSet": {"latestVersionId": "1"}})
    code, _ = cli_error(srv, *mi, "delete-image-set", "--datastore-id", ds, "--image-set-id", "0" * 32)
    assert code == "ResourceNotFoundException"
    # Tags went with the image set.
    try:
        assert client.list_tags_for_resource(resourceArn=arn(ds, dup))["tags"] == {}
    except ClientError as e:
        assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    # Its document blob is collected (nothing else refers to it).
    deadline = time.monotonic() + 20
    while len(blob_names(docs_dir)) != 2:
        assert time.monotonic() < deadline, (docs_before, blob_names(docs_dir))
        time.sleep(0.1)
    assert blob_names(docs_dir) < docs_before
    # Search hides it; the source still serves every shared frame, whose blobs stay.
    assert {s["imageSetId"] for s in client.search_image_sets(datastoreId=ds)["imageSetsMetadataSummaries"]} == \
        {source, keeper}
    assert all(frame_served(client, ds, source, f) for f in fids)
    assert blob_names(frames_dir) == set(fids)
    assert metadata(client, ds, source) == src_doc

    # The data store cannot go while an image set lives.
    expect_error(*CONFLICT, client.delete_datastore, datastoreId=ds)
    resp = cli_json(srv, *mi, "delete-image-set", "--datastore-id", ds, "--image-set-id", source)
    assert resp["imageSetWorkflowStatus"] == "DELETING"
    assert wait_unlocked(client, ds, source)["imageSetState"] == "DELETED"
    assert not frame_served(client, ds, source, fids[0])
    # The remaining copy still serves every frame: the source's deletion left the shared blobs.
    assert all(frame_served(client, ds, keeper, f) for f in fids)
    time.sleep(0.5)
    assert blob_names(frames_dir) == set(fids)
    assert [s["imageSetId"] for s in client.search_image_sets(datastoreId=ds)["imageSetsMetadataSummaries"]] == \
        [keeper]
    expect_error(*CONFLICT, client.delete_datastore, datastoreId=ds)
    client.delete_image_set(datastoreId=ds, imageSetId=keeper)
    assert wait_unlocked(client, ds, keeper)["imageSetState"] == "DELETED"
    assert client.search_image_sets(datastoreId=ds)["imageSetsMetadataSummaries"] == []
    # Nothing refers to the frames and documents any more: their blobs are collected.
    deadline = time.monotonic() + 20
    while blob_names(frames_dir) | blob_names(docs_dir):
        assert time.monotonic() < deadline, (blob_names(frames_dir), blob_names(docs_dir))
        time.sleep(0.1)
    client.delete_datastore(datastoreId=ds)
    wait_status(client, ds, "DELETED")


# --- 2. boto3 -----------------------------------------------------------------------------------


def test_boto3_update_with_raw_bytes_removals_and_revert(srv, store):
    """On a non-primary copy of the SC_rgb series: one update (raw JSON bytes, boto3 base64-encodes
    them) changes Patient, Study, Series and Instance attributes and removes one instance; found-by
    columns and GetImageFrame follow; tags stay across versions; a copy into it whose grouping
    elements no longer match fails; a revert brings version 1 back."""
    client = srv.client()
    ds, sc = store["ds"], store["sets"]["SC_rgb.dcm"]
    series = store["uids"]["SC_rgb.dcm"]["series"]
    sop_a, sop_b, sop_c = (store["uids"][n]["sop"] for n in SC_FILES)
    dup = fresh_copy(client, ds, sc)
    doc1 = metadata(client, ds, dup)
    assert doc1 == as_image_set(metadata(client, ds, sc), dup)
    frames1 = frame_ids(doc1)
    client.tag_resource(resourceArn=arn(ds, dup), tags={"project": "changes", "stage": "one"})

    updatable = {"SchemaVersion": 1.1,
                 "Patient": {"DICOM": {"PatientID": "LB-CHG-4", "PatientName": "Doe^Jane"}},
                 "Study": {"DICOM": {"StudyDescription": "Rewritten"},
                           "Series": {series: {"DICOM": {"SeriesDescription": "Edited series"},
                                               "Instances": {sop_a: {"DICOM": {"InstanceNumber": "7"}}}}}}}
    # Removals apply first, then updates: StudyDescription, in both, ends with the new value.
    removable = {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": ""},
                                                 "Series": {series: {"Instances": {sop_c: {}}}}}}
    resp = update(client, ds, dup, "1", updatable, removable)
    assert (resp["latestVersionId"], resp["imageSetState"], resp["imageSetWorkflowStatus"]) == \
        ("2", "LOCKED", "UPDATING")
    assert wait_unlocked(client, ds, dup)["imageSetWorkflowStatus"] == "UPDATED"
    doc2 = metadata(client, ds, dup)
    want = copy.deepcopy(doc1)
    want["Patient"]["DICOM"].update(PatientID="LB-CHG-4", PatientName="Doe^Jane")
    want["Study"]["DICOM"]["StudyDescription"] = "Rewritten"
    want["Study"]["Series"][series]["DICOM"]["SeriesDescription"] = "Edited series"
    want["Study"]["Series"][series]["Instances"][sop_a]["DICOM"]["InstanceNumber"] = "7"
    del want["Study"]["Series"][series]["Instances"][sop_c]
    assert doc2 == want
    # The removed instance's frames are no longer the copy's (the source still serves them).
    for fid in frames1[sop_c]:
        assert not frame_served(client, ds, dup, fid)
        assert frame_served(client, ds, sc, fid)
    assert all(frame_served(client, ds, dup, f) for f in frames1[sop_a] + frames1[sop_b])
    # Found-by columns follow the new document.
    (found,) = search_eq(client, ds, DICOMPatientId="LB-CHG-4")
    assert found["imageSetId"] == dup and found["version"] == 2
    assert found["DICOMTags"]["DICOMPatientName"] == "Doe^Jane"
    assert found["DICOMTags"]["DICOMNumberOfStudyRelatedInstances"] == 2
    assert dup not in {s["imageSetId"] for s in search_eq(client, ds, DICOMPatientId="ID1")}
    assert client.list_tags_for_resource(resourceArn=arn(ds, dup))["tags"] == {"project": "changes", "stage": "one"}

    # An update may not remove every instance (DeleteImageSet does that).
    expect_error(*BAD, update, client, ds, dup, "2", removable={
        "SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {sop_a: {}, sop_b: {}}}}}})
    expect_error(*BAD, update, client, ds, dup, "2", removable={
        "SchemaVersion": 1.1, "Study": {"Series": {series: {}}}})
    # With force, a new SOP Instance UID that is already an instance of the image set is refused.
    expect_error(*BAD, update, client, ds, dup, "2", {"SchemaVersion": 1.1, "Study": {"Series": {series: {
        "Instances": {sop_a: {"DICOM": {"SOPInstanceUID": sop_b}}}}}}}, force=True)
    assert [v["versionId"] for v in versions(client, ds, dup)] == ["2", "1"]

    # The removed instance copied back from the source without force: the grouping elements
    # differ now (PatientID), so version 3 ends COPY_FAILED and keeps version 2's document.
    client.copy_image_set(datastoreId=ds, sourceImageSetId=sc, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "1", "DICOMCopies": {"copiableAttributes": json.dumps(
            {"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {sop_c: {}}}}}})}},
        "destinationImageSet": {"imageSetId": dup, "latestVersionId": "2"}})
    failed = wait_unlocked(client, ds, dup)
    wait_unlocked(client, ds, sc)
    assert (failed["versionId"], failed["imageSetWorkflowStatus"]) == ("3", "COPY_FAILED"), failed
    assert "Series of SourceImageSet and DestinationImageSet don't match." in failed["message"]
    assert metadata(client, ds, dup) == doc2

    # Revert to version 1: the same document and frames live again; found-by tags recomputed.
    resp = client.update_image_set_metadata(datastoreId=ds, imageSetId=dup, latestVersionId="3",
                                            updateImageSetMetadataUpdates={"revertToVersionId": "1"})
    assert resp["latestVersionId"] == "4" and resp["imageSetState"] == "LOCKED"
    assert wait_unlocked(client, ds, dup)["imageSetWorkflowStatus"] == "UPDATED"
    assert metadata(client, ds, dup) == doc1
    assert metadata(client, ds, dup, version="2") == doc2
    assert all(frame_served(client, ds, dup, f) for f in frames1[sop_c])
    assert search_eq(client, ds, DICOMPatientId="LB-CHG-4") == []
    found = {s["imageSetId"]: s for s in search_eq(client, ds, DICOMPatientId="ID1")}
    assert found[dup]["version"] == 4 and found[dup]["DICOMTags"]["DICOMNumberOfStudyRelatedInstances"] == 3
    assert client.list_tags_for_resource(resourceArn=arn(ds, dup))["tags"] == {"project": "changes", "stage": "one"}
    listed = versions(client, ds, dup)
    assert [(v["versionId"], v["ImageSetWorkflowStatus"]) for v in listed] == \
        [("4", "UPDATED"), ("3", "COPY_FAILED"), ("2", "UPDATED"), ("1", "COPIED")]
    assert all(v["isPrimary"] is False for v in listed)


def test_boto3_copy_subsets_into_destinations(srv, store):
    """copiableAttributes picks instances; copies into an existing destination make new versions;
    a duplicate SOP instance or mismatched series end COPY_FAILED (the previous document kept);
    `force` adds a foreign series leaving the destination's Patient and Study as they were;
    synchronous ValidationException / ConflictException cases."""
    client = srv.client()
    raw = srv.client(parameter_validation=False)
    ds, sc, jpg = store["ds"], store["sets"]["SC_rgb.dcm"], store["sets"]["JPGLosslessP14SV1_1s_1f_8b.dcm"]
    series = store["uids"]["SC_rgb.dcm"]["series"]
    sop_a, sop_b, sop_c = (store["uids"][n]["sop"] for n in SC_FILES)
    src_doc = metadata(client, ds, sc)

    def pick(*sops, series_uid=series, schema="1.1"):
        return {"SchemaVersion": schema, "Study": {"Series": {series_uid: {"Instances": {s: {} for s in sops}}}}}

    def copy_into(source, dest, dest_latest, copiable=None, src_latest="1", **kw):
        info = {"latestVersionId": src_latest}
        if copiable is not None:
            info["DICOMCopies"] = {"copiableAttributes": json.dumps(copiable)}
        return client.copy_image_set(datastoreId=ds, sourceImageSetId=source, copyImageSetInformation={
            "sourceImageSet": info, "destinationImageSet": {"imageSetId": dest, "latestVersionId": dest_latest}}, **kw)

    # A new image set with one instance of the source.
    part = fresh_copy(client, ds, sc, copiable=pick(sop_a))
    doc1 = metadata(client, ds, part)
    want1 = as_image_set(src_doc, part)
    want1["Study"]["Series"][series]["Instances"] = {sop_a: src_doc["Study"]["Series"][series]["Instances"][sop_a]}
    assert doc1 == want1

    # A series given as {} copies all its instances.
    whole = fresh_copy(client, ds, sc, copiable={"SchemaVersion": 1.1, "Study": {"Series": {series: {}}}})
    assert metadata(client, ds, whole) == as_image_set(src_doc, whole)

    # A second instance copied into it: version 2.
    resp = copy_into(sc, part, "1", pick(sop_b))
    dst, src = resp["destinationImageSetProperties"], resp["sourceImageSetProperties"]
    assert (dst["imageSetId"], dst["latestVersionId"], dst["imageSetState"], dst["imageSetWorkflowStatus"]) == \
        (part, "2", "LOCKED", "COPYING")
    assert (src["imageSetId"], src["latestVersionId"], src["imageSetWorkflowStatus"]) == \
        (sc, "1", "COPYING_WITH_READ_ONLY_ACCESS")
    done = wait_unlocked(client, ds, part)
    assert (done["versionId"], done["imageSetWorkflowStatus"]) == ("2", "COPIED")
    wait_unlocked(client, ds, sc)
    doc2 = metadata(client, ds, part)
    want2 = copy.deepcopy(want1)
    want2["Study"]["Series"][series]["Instances"][sop_b] = src_doc["Study"]["Series"][series]["Instances"][sop_b]
    assert doc2 == want2

    # The same SOP instance again: version 3 ends COPY_FAILED with the previous document.
    assert copy_into(sc, part, "2", pick(sop_a))["destinationImageSetProperties"]["latestVersionId"] == "3"
    failed = wait_unlocked(client, ds, part)
    wait_unlocked(client, ds, sc)
    assert (failed["versionId"], failed["imageSetState"], failed["imageSetWorkflowStatus"]) == \
        ("3", "ACTIVE", "COPY_FAILED")
    assert "SOP Instance UIDs must be unique within the destination image set" in failed["message"], failed
    assert metadata(client, ds, part) == doc2

    # Another study's series without force: COPY_FAILED (series don't match).
    other_series = store["uids"]["JPGLosslessP14SV1_1s_1f_8b.dcm"]["series"]
    other_doc = metadata(client, ds, jpg)
    copy_into(jpg, part, "3", src_latest=latest_version(client, ds, jpg))
    failed = wait_unlocked(client, ds, part)
    wait_unlocked(client, ds, jpg)
    assert (failed["versionId"], failed["imageSetWorkflowStatus"]) == ("4", "COPY_FAILED")
    assert "Series of SourceImageSet and DestinationImageSet don't match." in failed["message"], failed
    assert metadata(client, ds, part) == doc2

    # With force: a new series with the source's series attributes; the destination's Patient and
    # Study attributes unchanged.
    copy_into(jpg, part, "4", src_latest=latest_version(client, ds, jpg), force=True)
    done = wait_unlocked(client, ds, part)
    wait_unlocked(client, ds, jpg)
    assert (done["versionId"], done["imageSetWorkflowStatus"]) == ("5", "COPIED"), done
    doc5 = metadata(client, ds, part)
    assert doc5["Patient"] == doc2["Patient"] and doc5["Study"]["DICOM"] == doc2["Study"]["DICOM"]
    assert set(doc5["Study"]["Series"]) == {series, other_series}
    assert doc5["Study"]["Series"][series] == doc2["Study"]["Series"][series]
    assert doc5["Study"]["Series"][other_series] == other_doc["Study"]["Series"][other_series]
    assert [(v["versionId"], v["ImageSetWorkflowStatus"]) for v in versions(client, ds, part)] == \
        [("5", "COPIED"), ("4", "COPY_FAILED"), ("3", "COPY_FAILED"), ("2", "COPIED"), ("1", "COPIED")]
    assert [v["versionId"] for v in versions(client, ds, sc)] == ["1"] and \
        wait_unlocked(client, ds, sc)["imageSetWorkflowStatus"] == "CREATED"

    # An empty object for a series removes the series node with its instances (and frames).
    update(client, ds, part, "5", removable={"SchemaVersion": 1.1, "Study": {"Series": {other_series: {}}}})
    done = wait_unlocked(client, ds, part)
    assert (done["versionId"], done["imageSetWorkflowStatus"]) == ("6", "UPDATED"), done
    assert metadata(client, ds, part) == doc2
    other_frames = frame_ids(other_doc)[store["uids"]["JPGLosslessP14SV1_1s_1f_8b.dcm"]["sop"]]
    assert not frame_served(client, ds, part, other_frames[0])
    assert frame_served(client, ds, jpg, other_frames[0])

    # Synchronous refusals, no version allocated.
    expect_error(*CONFLICT, copy_into, sc, part, "5", pick(sop_c))  # stale destination version
    expect_error(*CONFLICT, copy_into, sc, part, "6", pick(sop_c), src_latest="2")  # stale source version
    expect_error(*BAD, copy_into, sc, part, "6", pick(sop_c, series_uid="1.2.3.4.5.6.7"))
    expect_error(*BAD, copy_into, sc, part, "6", pick("1.2.3.4.5.6.7.8"))
    expect_error(*BAD, copy_into, part, part, "6", src_latest="6")  # source == destination
    expect_error(*BAD, client.copy_image_set, datastoreId=ds, sourceImageSetId=sc, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "1", "DICOMCopies": {"copiableAttributes": "{not json"}}})
    expect_error(*BAD, client.copy_image_set, datastoreId=ds, sourceImageSetId=sc, promoteToPrimary=True,
                 copyImageSetInformation={"sourceImageSet": {"latestVersionId": "1"},
                                          "destinationImageSet": {"imageSetId": part, "latestVersionId": "6"}})
    expect_error(*BAD, raw.copy_image_set, datastoreId=ds, sourceImageSetId=sc, copyImageSetInformation={})
    expect_error(*NF, client.copy_image_set, datastoreId=ds, sourceImageSetId="0" * 32,
                 copyImageSetInformation={"sourceImageSet": {"latestVersionId": "1"}})
    expect_error(*NF, copy_into, sc, "0" * 32, "1", pick(sop_c))
    assert latest_version(client, ds, part) == "6" and latest_version(client, ds, sc) == "1"


def test_boto3_update_validation(srv, store):
    """Every refused update is a ValidationException (ServiceQuotaExceeded for size) naming the
    attribute, never echoing a value or UID, and allocates no version."""
    client = srv.client()
    raw = srv.client(parameter_validation=False)
    ds = store["ds"]
    dfl = store["sets"]["image_dfl.dcm"]
    dup = fresh_copy(client, ds, dfl)
    primary = store["sets"]["JPGLosslessP14SV1_1s_1f_8b.dcm"]
    u = store["uids"]["image_dfl.dcm"]
    pu = store["uids"]["JPGLosslessP14SV1_1s_1f_8b.dcm"]
    doc = metadata(client, ds, dup)
    primary_doc = metadata(client, ds, primary)
    primary_latest = latest_version(client, ds, primary)

    def inst(attrs, vrs=None, series=u["series"], sop=u["sop"]):
        node = {"DICOM": attrs}
        if vrs is not None:
            node["DICOMVRs"] = vrs
        return {"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {sop: node}}}}}

    def refused(updatable=None, removable=None, names=(), image_set=dup, latest="1", code=BAD, secrets=(), **kw):
        err = expect_error(*code, update, client, ds, image_set, latest, updatable, removable, **kw)
        msg = err.response["Error"]["Message"]
        for name in names:
            assert name in msg, (name, msg)
        for secret in (*secrets, u["series"], u["sop"], pu["series"], pu["sop"]):
            assert secret not in msg, (secret, msg)
        return msg

    s11 = {"SchemaVersion": 1.1}
    refused({"Study": {"DICOM": {"StudyDescription": "x"}}}, names=["SchemaVersion"])
    refused({"SchemaVersion": 2, "Study": {"DICOM": {"StudyDescription": "x"}}}, names=["SchemaVersion"])
    refused({**s11, "Study": {"DICOM": {"StudyDescription": "x"}}, "Extra": {}})  # unknown member
    refused({**s11, "Study": {"DICOM": {"StudyDescription": "x"}, "Unknown": {}}})  # unknown member, nested
    refused(b"not json", names=["updatableAttributes"])
    refused(b"[1, 2]", names=["updatableAttributes"])
    refused(removable=b"{", names=["removableAttributes"])
    # Generated attributes: never, even with force.
    refused(inst({"PixelData": None}), names=["PixelData"])
    refused(inst({"PixelData": None}), names=["PixelData"], force=True)
    refused({**s11, "ImageSetID": "0" * 32, "Study": {"DICOM": {"StudyDescription": "x"}}}, names=["ImageSetID"])
    refused({**s11, "Study": {"Series": {u["series"]: {"Instances": {u["sop"]: {
        "StoredTransferSyntaxUID": "1.2.840.10008.1.2.1"}}}}}}, names=["StoredTransferSyntaxUID"])
    # Without force: identifiers, StudyID.
    refused({**s11, "Study": {"DICOM": {"StudyInstanceUID": "1.2.3.4"}}}, names=["StudyInstanceUID"])
    refused({**s11, "Study": {"DICOM": {"StudyID": "42"}}}, names=["StudyID"])
    refused(inst({"SOPInstanceUID": "1.2.3.4.5"}), names=["SOPInstanceUID"], secrets=["1.2.3.4.5"])
    # SQ, multi-valued, VR, unknown keyword, private element (without force), wrong level.
    refused({**s11, "Study": {"DICOM": {"ReferencedStudySequence": [{"ReferencedSOPClassUID": "1.2.3"}]}}},
            names=["ReferencedStudySequence"])
    refused({**s11, "Patient": {"DICOM": {"PatientName": ["SECRET^ONE", "SECRET^TWO"]}}}, names=["PatientName"],
            secrets=["SECRET"])
    refused({**s11, "Study": {"DICOM": {"StudyDate": "2024-13-45"}}}, names=["StudyDate"], secrets=["2024-13-45"])
    refused({**s11, "Study": {"DICOM": {"StudyDate": 20240101}}}, names=["StudyDate"])
    refused({**s11, "Study": {"DICOM": {"StudyTime": "25xx"}}}, names=["StudyTime"], secrets=["25xx"])
    refused({**s11, "Study": {"DICOM": {"StudyDescription": "S" * 65}}}, names=["StudyDescription"],
            secrets=["S" * 65])
    refused({**s11, "Study": {"DICOM": {"NotADicomKeyword": "x"}}}, names=["NotADicomKeyword"])
    refused(inst({"00091001": "97"}, {"00091001": "DS"}), names=["00091001"])
    msg = refused({**s11, "Study": {"DICOM": {"PatientName": "SECRET^WRONGLEVEL"}}}, names=["PatientName"],
                  secrets=["SECRET"])
    assert "Patient" in msg.replace("PatientName", "") and "Study" in msg, msg
    # A series or instance the image set does not have (the message does not echo the UID).
    refused({**s11, "Study": {"Series": {"1.2.3.999": {"DICOM": {"SeriesDescription": "x"}}}}},
            secrets=["1.2.3.999"])
    refused(inst({"InstanceNumber": "1"}, sop="1.2.3.998"), secrets=["1.2.3.998"])
    refused(removable={**s11, "Study": {"Series": {"1.2.3.997": {}}}}, secrets=["1.2.3.997"])
    # Identifiers cannot be removed.
    refused(removable={**s11, "Study": {"DICOM": {"StudyInstanceUID": ""}}}, names=["StudyInstanceUID"])
    # Size quota: the decoded documents together over 10,240 bytes (removal values are ignored).
    expect_error("ServiceQuotaExceededException", 402, update, client, ds, dup, "1",
                 removable={**s11, "Study": {"DICOM": {"StudyDescription": "x" * 11000}}})
    # includeStudyImageSets on a non-primary image set.
    refused({**s11, "Study": {"DICOM": {"StudyDescription": "x"}}}, includeStudyImageSets=True)
    # The union: both members, or neither.
    both = {"DICOMUpdates": {"updatableAttributes": doc_bytes({**s11, "Study": {"DICOM": {"StudyDescription": "x"}}})},
            "revertToVersionId": "1"}
    expect_error(*BAD, raw.update_image_set_metadata, datastoreId=ds, imageSetId=dup, latestVersionId="1",
                 updateImageSetMetadataUpdates=both)
    expect_error(*BAD, raw.update_image_set_metadata, datastoreId=ds, imageSetId=dup, latestVersionId="1",
                 updateImageSetMetadataUpdates={})
    # Revert: to the latest version, or to one that does not exist.
    for target in ("1", "99"):
        expect_error(*BAD, client.update_image_set_metadata, datastoreId=ds, imageSetId=dup, latestVersionId="1",
                     updateImageSetMetadataUpdates={"revertToVersionId": target})
    # Missing image set / data store; stale version.
    ok = {**s11, "Study": {"DICOM": {"StudyDescription": "fine"}}}
    expect_error(*NF, update, client, ds, "0" * 32, "1", ok)
    expect_error(*NF, update, client, "1" * 32, dup, "1", ok)
    expect_error(*CONFLICT, update, client, ds, dup, "2", ok)

    # Primary image sets: no Patient- or Series-level updates or removals, no UID changes even with force.
    def refused_primary(updatable=None, removable=None, names=(), **kw):
        return refused(updatable, removable, names=names, image_set=primary, latest=primary_latest, **kw)

    refused_primary({**s11, "Patient": {"DICOM": {"PatientName": "SECRET^PRIMARY"}}}, names=["PatientName"],
                    secrets=["SECRET"])
    refused_primary(removable={**s11, "Patient": {"DICOM": {"PatientName": ""}}}, names=["PatientName"])
    refused_primary({**s11, "Study": {"Series": {pu["series"]: {"DICOM": {"SeriesDescription": "x"}}}}},
                    names=["SeriesDescription"])
    refused_primary(inst({"SOPInstanceUID": "1.2.3.4.6"}, series=pu["series"], sop=pu["sop"]),
                    names=["SOPInstanceUID"], force=True, secrets=["1.2.3.4.6"])

    # Nothing was allocated by any of these.
    assert [v["versionId"] for v in versions(client, ds, dup)] == ["1"]
    assert metadata(client, ds, dup) == doc
    assert latest_version(client, ds, primary) == primary_latest
    assert metadata(client, ds, primary) == primary_doc


def test_boto3_forced_updates(srv, store):
    """`force` on a non-primary copy: new SOP Instance / Series / Study UIDs rename the nodes,
    private elements are added (VR from DICOMVRs) and removed at the instance level; the versions
    record overrides.forced; search finds the copy by its new UIDs."""
    client = srv.client()
    ds = store["ds"]
    src = store["sets"]["JPGLosslessP14SV1_1s_1f_8b.dcm"]
    u = store["uids"]["JPGLosslessP14SV1_1s_1f_8b.dcm"]
    dup = fresh_copy(client, ds, src)
    doc1 = metadata(client, ds, dup)
    new_sop, new_series, new_study = "1.2.826.0.1.3680043.8.498.7001", "1.2.826.0.1.3680043.8.498.7002", \
        "1.2.826.0.1.3680043.8.498.7003"

    # Private elements: instance level only, a new one needs its VR.
    expect_error(*BAD, update, client, ds, dup, "1", {"SchemaVersion": 1.1, "Study": {"Series": {u["series"]: {
        "Instances": {u["sop"]: {"DICOM": {"00091001": "97"}}}}}}}, force=True)
    expect_error(*BAD, update, client, ds, dup, "1", {"SchemaVersion": 1.1, "Study": {"Series": {u["series"]: {
        "DICOM": {"00091001": "97"}}}}}, force=True)

    # v2: a new SOP Instance UID and a private element on the instance.
    resp = update(client, ds, dup, "1", {"SchemaVersion": 1.1, "Study": {"Series": {u["series"]: {"Instances": {
        u["sop"]: {"DICOM": {"SOPInstanceUID": new_sop, "00091001": "97"}, "DICOMVRs": {"00091001": "DS"}}}}}}},
        force=True)
    assert resp["latestVersionId"] == "2"
    done = wait_unlocked(client, ds, dup)
    assert (done["imageSetWorkflowStatus"], done.get("overrides")) == ("UPDATED", {"forced": True}), done
    doc2 = metadata(client, ds, dup)
    old_inst = doc1["Study"]["Series"][u["series"]]["Instances"][u["sop"]]
    assert set(doc2["Study"]["Series"][u["series"]]["Instances"]) == {new_sop}
    inst = doc2["Study"]["Series"][u["series"]]["Instances"][new_sop]
    assert inst["DICOM"]["SOPInstanceUID"] == new_sop and inst["DICOM"]["00091001"] == "97"
    assert inst["DICOMVRs"]["00091001"] == "DS"
    assert inst["ImageFrames"] == old_inst["ImageFrames"]
    assert {k: v for k, v in inst["DICOM"].items() if k not in ("SOPInstanceUID", "00091001")} == \
        {k: v for k, v in old_inst["DICOM"].items() if k != "SOPInstanceUID"}
    assert doc2["Patient"] == doc1["Patient"] and doc2["Study"]["DICOM"] == doc1["Study"]["DICOM"]
    assert frame_served(client, ds, dup, inst["ImageFrames"][0]["ID"])

    # v3: new Series and Study Instance UIDs.
    update(client, ds, dup, "2", {"SchemaVersion": 1.1, "Study": {
        "DICOM": {"StudyInstanceUID": new_study},
        "Series": {u["series"]: {"DICOM": {"SeriesInstanceUID": new_series}}}}}, force=True)
    assert wait_unlocked(client, ds, dup)["imageSetWorkflowStatus"] == "UPDATED"
    doc3 = metadata(client, ds, dup)
    assert set(doc3["Study"]["Series"]) == {new_series}
    assert doc3["Study"]["DICOM"]["StudyInstanceUID"] == new_study
    assert doc3["Study"]["Series"][new_series]["DICOM"]["SeriesInstanceUID"] == new_series
    assert doc3["Study"]["Series"][new_series]["Instances"] == doc2["Study"]["Series"][u["series"]]["Instances"]
    (found,) = search_eq(client, ds, DICOMSeriesInstanceUID=new_series)
    assert found["imageSetId"] == dup and found["DICOMTags"]["DICOMStudyInstanceUID"] == new_study
    assert [s["imageSetId"] for s in search_eq(client, ds, DICOMStudyInstanceUID=new_study)] == [dup]
    assert dup not in {s["imageSetId"] for s in search_eq(client, ds, DICOMSeriesInstanceUID=u["series"])}

    # v4: the private element removed (force).
    update(client, ds, dup, "3", removable={"SchemaVersion": 1.1, "Study": {"Series": {new_series: {"Instances": {
        new_sop: {"DICOM": {"00091001": ""}}}}}}}, force=True)
    assert wait_unlocked(client, ds, dup)["imageSetWorkflowStatus"] == "UPDATED"
    doc4 = metadata(client, ds, dup)
    assert "00091001" not in doc4["Study"]["Series"][new_series]["Instances"][new_sop]["DICOM"]

    listed = versions(client, ds, dup)
    assert [v["versionId"] for v in listed] == ["4", "3", "2", "1"]
    assert [v.get("overrides") for v in listed] == [{"forced": True}] * 3 + [None]
    assert client.get_image_set(datastoreId=ds, imageSetId=dup, versionId="2")["overrides"] == {"forced": True}
    assert "overrides" not in client.get_image_set(datastoreId=ds, imageSetId=dup, versionId="1")
    # The source primary image set is untouched.
    assert set(metadata(client, ds, src)["Study"]["Series"]) == {u["series"]}


def test_include_study_image_sets(srv, store, corpus, tmp_path):
    """includeStudyImageSets on a primary image set: the Study-level change reaches the study's other
    primary image set (its own new version) in the same transaction; later imports are grouped by
    the updated grouping elements (AccessionNumber)."""
    import pydicom

    client = srv.client()
    ds = store["ds"]
    mr1, mr2 = store["sets"]["MR_small.dcm"], store["sets"][MR_SERIES2]
    docs1 = {i: metadata(client, ds, i) for i in (mr1, mr2)}
    (summary,) = search_eq(client, ds, DICOMSeriesInstanceUID=store["uids"]["MR_small.dcm"]["series"])
    assert summary["DICOMTags"]["DICOMNumberOfStudyRelatedSeries"] == 2
    assert [v["versionId"] for v in versions(client, ds, mr2)] == ["1"]
    s11 = {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "Consistent", "AccessionNumber": "ACC-NEW"}}}
    expect_error(*BAD, client.update_image_set_metadata, datastoreId=ds, imageSetId=mr1, latestVersionId="1",
                 includeStudyImageSets=True, updateImageSetMetadataUpdates={"revertToVersionId": "1"})
    resp = update(client, ds, mr1, "1", s11, includeStudyImageSets=True)
    assert resp["latestVersionId"] == "2" and resp["imageSetState"] == "LOCKED"
    assert wait_unlocked(client, ds, mr1)["imageSetWorkflowStatus"] == "UPDATED"
    other = wait_unlocked(client, ds, mr2)
    assert (other["versionId"], other["imageSetState"], other["imageSetWorkflowStatus"]) == ("2", "ACTIVE", "UPDATED")
    for i in (mr1, mr2):
        want = copy.deepcopy(docs1[i])
        want["Study"]["DICOM"].update(StudyDescription="Consistent", AccessionNumber="ACC-NEW")
        assert metadata(client, ds, i) == want, i
        assert metadata(client, ds, i, version="1") == docs1[i]
    # Without the flag only the image set itself changes.
    update(client, ds, mr1, "2", {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "Alone"}}})
    assert wait_unlocked(client, ds, mr1)["versionId"] == "3"
    assert latest_version(client, ds, mr2) == "2"
    assert metadata(client, ds, mr2)["Study"]["DICOM"]["StudyDescription"] == "Consistent"
    (summary,) = search_eq(client, ds, DICOMSeriesInstanceUID=store["uids"]["MR_small.dcm"]["series"])
    assert summary["DICOMTags"]["DICOMAccessionNumber"] == "ACC-NEW"
    assert {s["imageSetId"] for s in search_eq(client, ds, DICOMAccessionNumber="ACC-NEW")} == {mr1, mr2}

    # A primary destination keeps one series, even with force: the version ends COPY_FAILED.
    dfl = store["sets"]["image_dfl.dcm"]
    client.copy_image_set(datastoreId=ds, sourceImageSetId=dfl, force=True, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": latest_version(client, ds, dfl)},
        "destinationImageSet": {"imageSetId": mr2, "latestVersionId": "2"}})
    failed = wait_unlocked(client, ds, mr2)
    wait_unlocked(client, ds, dfl)
    assert (failed["versionId"], failed["imageSetWorkflowStatus"]) == ("3", "COPY_FAILED"), failed
    assert "A primary image set holds one series." in failed["message"], failed
    assert metadata(client, ds, mr2, version="3") == metadata(client, ds, mr2, version="2")

    # New instances of the series: with the old (empty) AccessionNumber they conflict with the
    # updated primary image set (a non-primary one); with the new one they join it (version 4).
    files = {}
    for tag, accession in (("old", ""), ("new", "ACC-NEW")):
        inst = pydicom.dcmread(corpus / "MR_small.dcm")
        inst.SOPInstanceUID = f"{inst.SOPInstanceUID}.{len(files) + 7}"
        inst.file_meta.MediaStorageSOPInstanceUID = inst.SOPInstanceUID
        inst.AccessionNumber = accession
        files[f"{tag}.dcm"] = tmp_path / f"{tag}.dcm"
        inst.save_as(files[f"{tag}.dcm"])
    placed, _ = boto3_import(srv, ds, "changes", files, "regroup")
    assert placed["new.dcm"]["imageSetId"] == mr1 and placed["new.dcm"]["isPrimary"] is True
    assert placed["old.dcm"]["imageSetId"] not in (mr1, mr2) and placed["old.dcm"]["isPrimary"] is False
    done = wait_unlocked(client, ds, mr1)
    assert (done["versionId"], done["imageSetWorkflowStatus"]) == ("4", "IMPORTED"), done
    assert len(instances_of(metadata(client, ds, mr1))) == 2


def test_concurrent_and_locked_writes(srv, store):
    """Version numbers come from one compare-and-set: of 8 concurrent updates naming the same
    latest version exactly one wins, the rest are ConflictExceptions; a LOCKED image set serves
    the previous document and refuses writes; concurrent copies of one source either succeed or
    conflict, and every success made exactly one image set."""
    ds = store["ds"]
    client = srv.client()
    dup = fresh_copy(client, ds, store["sets"]["image_dfl.dcm"])
    results = [None] * 8
    barrier = threading.Barrier(len(results))

    def attempt(i):
        c = srv.client()
        barrier.wait()
        try:
            results[i] = update(c, ds, dup, "1", {"SchemaVersion": 1.1,
                                                  "Study": {"DICOM": {"StudyDescription": f"writer {i}"}}})
        except ClientError as e:
            results[i] = e.response["Error"]["Code"]

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wins = [i for i, r in enumerate(results) if isinstance(r, dict)]
    assert len(wins) == 1, results
    assert sorted(r for r in results if not isinstance(r, dict)) == ["ConflictException"] * (len(results) - 1)
    assert results[wins[0]]["latestVersionId"] == "2"
    assert wait_unlocked(client, ds, dup)["imageSetWorkflowStatus"] == "UPDATED"
    assert [v["versionId"] for v in versions(client, ds, dup)] == ["2", "1"]
    assert metadata(client, ds, dup)["Study"]["DICOM"]["StudyDescription"] == f"writer {wins[0]}"

    # While an update runs (LOCKED), writes are ConflictExceptions and reads answer with the
    # previous document. The window is short, so each round checks only what it saw: a second
    # update sent right after the first either finds it LOCKED (ConflictException) or succeeds; a
    # document read after the update was accepted and before a GetImageSet that still says LOCKED
    # must be the previous one. Both must have been seen at least once in 60 rounds.
    seen_conflict = seen_read = False
    latest, previous = 2, metadata(client, ds, dup)
    for i in range(60):
        resp = update(client, ds, dup, str(latest), {"SchemaVersion": 1.1,
                                                     "Study": {"DICOM": {"StudyDescription": f"round {i}"}}})
        latest = int(resp["latestVersionId"])
        if not seen_conflict:
            try:
                latest = int(update(client, ds, dup, str(latest), {"SchemaVersion": 1.1, "Study": {
                    "DICOM": {"StudyDescription": f"round {i} again"}}})["latestVersionId"])
            except ClientError as e:
                assert e.response["Error"]["Code"] == "ConflictException", e.response
                seen_conflict = True
        else:
            during = metadata(client, ds, dup)
            after = client.get_image_set(datastoreId=ds, imageSetId=dup)
            if after["imageSetState"] == "LOCKED":
                assert during == previous, "a read during an update shows the previous document"
                assert (after["versionId"], after["imageSetWorkflowStatus"]) == (str(latest), "UPDATING")
                seen_read = True
        assert wait_unlocked(client, ds, dup)["versionId"] == str(latest)
        previous = metadata(client, ds, dup)
        if seen_read and seen_conflict:
            break
    assert seen_conflict and seen_read, (seen_conflict, seen_read)

    # Concurrent copies of the same source (the source is LOCKED while one copies).
    outcomes = [None] * 4
    barrier = threading.Barrier(len(outcomes))

    def copier(i):
        c = srv.client()
        barrier.wait()
        try:
            outcomes[i] = c.copy_image_set(datastoreId=ds, sourceImageSetId=dup, copyImageSetInformation={
                "sourceImageSet": {"latestVersionId": str(latest)}})["destinationImageSetProperties"]["imageSetId"]
        except ClientError as e:
            outcomes[i] = e.response["Error"]["Code"]

    threads = [threading.Thread(target=copier, args=(i,)) for i in range(len(outcomes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    made = [o for o in outcomes if o != "ConflictException"]
    assert made and all(re.fullmatch(r"[0-9a-z]{32}", o) for o in made), outcomes
    for dest in made:
        assert wait_unlocked(client, ds, dest)["imageSetWorkflowStatus"] == "COPIED"
    done = wait_unlocked(client, ds, dup)
    assert (done["versionId"], done["imageSetState"], done["imageSetWorkflowStatus"]) == \
        (str(latest), "ACTIVE", "UPDATED")
    copies = {s["imageSetId"] for s in search_eq(client, ds, DICOMSeriesInstanceUID=store["uids"]["image_dfl.dcm"]["series"])}
    assert set(made) <= copies


def test_promote_to_primary(srv, store):
    """CopyImageSet?promoteToPrimary=true on non-primary image sets of one series: a series without
    a primary image set becomes a new primary image set (the destination returned); a series with
    one gets the instances as a new version of it. Primary sources and destinations are refused."""
    client = srv.client()
    ds = store["ds"]
    rt = store["sets"]["rtdose_1frame.dcm"]
    u = store["uids"]["rtdose_1frame.dcm"]
    rt_doc = metadata(client, ds, rt)
    rt_frames = frame_ids(rt_doc)[u["sop"]]

    def promote(source, latest, **info):
        return client.copy_image_set(datastoreId=ds, sourceImageSetId=source, promoteToPrimary=True,
                                     copyImageSetInformation={"sourceImageSet": {"latestVersionId": latest}, **info})

    # Primary source, or a destination given: ValidationException.
    expect_error(*BAD, promote, rt, latest_version(client, ds, rt))

    # A copy whose instance gets a new SOP Instance UID (force) goes back into the primary image set.
    dup = fresh_copy(client, ds, rt)
    new_sop = u["sop"] + ".42"
    update(client, ds, dup, "1", {"SchemaVersion": 1.1, "Study": {"Series": {u["series"]: {"Instances": {
        u["sop"]: {"DICOM": {"SOPInstanceUID": new_sop}}}}}}}, force=True)
    assert wait_unlocked(client, ds, dup)["imageSetWorkflowStatus"] == "UPDATED"
    expect_error(*BAD, promote, dup, "2", destinationImageSet={"imageSetId": rt, "latestVersionId": "1"})
    resp = promote(dup, "2")
    dest = resp["destinationImageSetProperties"]
    assert dest["imageSetId"] == rt and dest["latestVersionId"] == "2", resp
    assert (dest["imageSetState"], dest["imageSetWorkflowStatus"]) == ("LOCKED", "COPYING")
    assert resp["sourceImageSetProperties"]["imageSetId"] == dup
    done = wait_unlocked(client, ds, rt)
    assert (done["versionId"], done["imageSetWorkflowStatus"], done["isPrimary"]) == ("2", "COPIED", True), done
    src_done = wait_unlocked(client, ds, dup)
    assert (src_done["versionId"], src_done["imageSetWorkflowStatus"], src_done["isPrimary"]) == \
        ("2", "UPDATED", False)
    doc = metadata(client, ds, rt)
    assert set(doc["Study"]["Series"]) == {u["series"]}
    assert set(doc["Study"]["Series"][u["series"]]["Instances"]) == {u["sop"], new_sop}
    assert doc["Study"]["Series"][u["series"]]["Instances"][u["sop"]] == \
        rt_doc["Study"]["Series"][u["series"]]["Instances"][u["sop"]]
    assert frame_ids(doc)[new_sop] == rt_frames, "frames are shared, never duplicated"
    (summary,) = [s for s in search_eq(client, ds, DICOMSeriesInstanceUID=u["series"]) if s["isPrimary"]]
    assert summary["imageSetId"] == rt and summary["DICOMTags"]["DICOMNumberOfStudyRelatedInstances"] == 2

    # A copy moved to a series of its own (force) becomes a new primary image set.
    solo = fresh_copy(client, ds, rt, copiable={"SchemaVersion": "1.1", "Study": {"Series": {u["series"]: {
        "Instances": {new_sop: {}}}}}})
    new_series = u["series"] + ".42"
    update(client, ds, solo, "1", {"SchemaVersion": 1.1, "Study": {"Series": {u["series"]: {
        "DICOM": {"SeriesInstanceUID": new_series}}}}}, force=True)
    assert wait_unlocked(client, ds, solo)["imageSetWorkflowStatus"] == "UPDATED"
    solo_doc = metadata(client, ds, solo)
    resp = promote(solo, "2")
    made = resp["destinationImageSetProperties"]["imageSetId"]
    assert made not in (solo, rt) and resp["destinationImageSetProperties"]["latestVersionId"] == "1"
    done = wait_unlocked(client, ds, made)
    assert (done["versionId"], done["imageSetState"], done["imageSetWorkflowStatus"], done["isPrimary"]) == \
        ("1", "ACTIVE", "COPIED", True), done
    assert metadata(client, ds, made) == as_image_set(solo_doc, made)
    found = {s["imageSetId"]: s["isPrimary"] for s in search_eq(client, ds, DICOMSeriesInstanceUID=new_series)}
    assert found == {solo: False, made: True}
    # The study now has two primary image sets (two series).
    study = {s["imageSetId"]: s for s in search_eq(client, ds, DICOMStudyInstanceUID=u["study"]) if s["isPrimary"]}
    assert set(study) == {rt, made}
    assert {s["DICOMTags"]["DICOMNumberOfStudyRelatedSeries"] for s in study.values()} == {2}
    assert {s["DICOMTags"]["DICOMNumberOfStudyRelatedInstances"] for s in study.values()} == {3}
    assert wait_unlocked(client, ds, solo)["isPrimary"] is False
    # The primary image set's own version history: v1 CREATED, v2 COPIED.
    assert [(v["versionId"], v["ImageSetWorkflowStatus"]) for v in versions(client, ds, rt)] == \
        [("2", "COPIED"), ("1", "CREATED")]


def test_crash_takeover_quota_and_tier_touches(make_server, corpus, tmp_path):
    """An update, a copy and a delete accepted just before the server is killed (SIGKILL) are
    finished after the restart, once the job lease (--job-lease-ms 1000) has run out: no image set
    stays LOCKED, and each ends as if nothing had happened (UPDATED / COPIED / DELETED). Also the
    copy frame quota (--max-copy-frames 5), and, after a restart with the service clock 31 days
    ahead, Update and Copy as storage-tier touches."""
    server = make_server(args=["--job-lease-ms", "1000", "--max-copy-frames", "5"])
    client = server.client()
    ds = make_datastore(server, "changes-crash")
    names = ("CT_small.dcm", "MR_small.dcm", "image_dfl.dcm", "emri_small.dcm")
    placed, _ = boto3_import(server, ds, "changes-crash", {n: corpus / n for n in names}, "c")
    ct, mr, dfl, emri = (placed[n]["imageSetId"] for n in names)
    # More frames than --max-copy-frames: ServiceQuotaExceededException (10 frames > 5).
    expect_error("ServiceQuotaExceededException", 402, client.copy_image_set, datastoreId=ds,
                 sourceImageSetId=emri, copyImageSetInformation={"sourceImageSet": {"latestVersionId": "1"}})
    assert [v["versionId"] for v in versions(client, ds, emri)] == ["1"]
    ct_doc, mr_doc = metadata(client, ds, ct), metadata(client, ds, mr)

    resp = update(client, ds, ct, "1", {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "crash"}}})
    assert resp["latestVersionId"] == "2"
    dup = client.copy_image_set(datastoreId=ds, sourceImageSetId=mr, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "1"}})["destinationImageSetProperties"]["imageSetId"]
    assert client.delete_image_set(datastoreId=ds, imageSetId=dfl)["imageSetWorkflowStatus"] == "DELETING"
    server.stop(sig=signal.SIGKILL)
    server.start()
    client = server.client()

    done = wait_unlocked(client, ds, ct, timeout=60)
    assert (done["versionId"], done["imageSetState"], done["imageSetWorkflowStatus"]) == ("2", "ACTIVE", "UPDATED")
    want = copy.deepcopy(ct_doc)
    want["Study"]["DICOM"]["StudyDescription"] = "crash"
    assert metadata(client, ds, ct) == want
    assert metadata(client, ds, ct, version="1") == ct_doc
    done = wait_unlocked(client, ds, dup, timeout=60)
    assert (done["versionId"], done["imageSetState"], done["imageSetWorkflowStatus"]) == ("1", "ACTIVE", "COPIED")
    assert metadata(client, ds, dup) == as_image_set(mr_doc, dup)
    src = wait_unlocked(client, ds, mr, timeout=60)
    assert (src["versionId"], src["imageSetState"], src["imageSetWorkflowStatus"]) == ("1", "ACTIVE", "CREATED")
    done = wait_unlocked(client, ds, dfl, timeout=60)
    assert (done["imageSetState"], done["imageSetWorkflowStatus"]) == ("DELETED", "DELETED")
    expect_error(*NF, client.get_image_set_metadata, datastoreId=ds, imageSetId=dfl)
    # The restarted server takes new writes.
    update(client, ds, ct, "2", removable={"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": ""}}})
    assert wait_unlocked(client, ds, ct)["versionId"] == "3"

    # Storage tiers: restarted with the service clock 31 days ahead, everything is archived;
    # UpdateImageSetMetadata and CopyImageSet (source and destination) are touches, GetImageSet is not.
    before = {i: client.get_image_set(datastoreId=ds, imageSetId=i)["lastAccessedAt"] for i in (ct, mr, dup)}
    # Finished jobs (the import, the changes, the data store's activation) survived the crash
    # restart; 31 days later they are past the 7-day retention: the sweep at start deletes them.
    finished = "SELECT id FROM jobs WHERE state IN ('SUCCEEDED', 'FAILED')"
    old_jobs = {r[0] for r in catalog_rows(server, finished)}
    assert len(old_jobs) >= 5, old_jobs
    # With a retention longer than the 31 days, the sweep at start keeps them.
    assert server.stop() == 0
    base_args = server.extra_args
    server.extra_args = base_args + ["--clock-offset-secs", str(ARCHIVE_OFFSET), "--job-retention-days", "60"]
    server.start()
    server.client().list_datastores()
    time.sleep(1.5)
    assert old_jobs <= {r[0] for r in catalog_rows(server, "SELECT id FROM jobs")}
    assert server.stop() == 0
    server.extra_args = base_args + ["--clock-offset-secs", str(ARCHIVE_OFFSET)]
    server.start()
    client = server.client()
    deadline = time.time() + 10
    while old_jobs & {r[0] for r in catalog_rows(server, "SELECT id FROM jobs")} and time.time() < deadline:
        time.sleep(0.1)
    assert not old_jobs & {r[0] for r in catalog_rows(server, "SELECT id FROM jobs")}
    for i in (ct, mr, dup):
        got = client.get_image_set(datastoreId=ds, imageSetId=i)
        assert (got["storageTier"], got["lastAccessedAt"]) == ("ARCHIVE_INSTANT_ACCESS", before[i]), i
    update(client, ds, ct, "3", {"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "touched"}}})
    wait_unlocked(client, ds, ct)
    made = client.copy_image_set(datastoreId=ds, sourceImageSetId=mr, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "1"}})["destinationImageSetProperties"]["imageSetId"]
    wait_unlocked(client, ds, made)
    for i in (ct, mr, made):
        got = wait_unlocked(client, ds, i)
        assert got["storageTier"] == "FREQUENT_ACCESS", i
        if i != made:
            moved = (got["lastAccessedAt"] - before[i]).total_seconds()
            assert ARCHIVE_OFFSET - 600 < moved < ARCHIVE_OFFSET + 3600, (i, moved)
    assert client.get_image_set(datastoreId=ds, imageSetId=dup)["storageTier"] == "ARCHIVE_INSTANT_ACCESS"
