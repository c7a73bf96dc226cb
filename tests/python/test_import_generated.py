"""DICOM import of a generated study (scripts/dicom-generate.py): 3 series of multi-frame
Enhanced CT instances, every 4th instance with another PatientID. One primary image set per
series, one non-primary image set per series for the conflicting instances, matched-instance
counts per image set, and a second import of a series adding version 2 to its primary set.
Runs on both backends (LIGHTBOX_TEST_BACKEND=embedded | postgres-s3); the stored metadata
documents are checked too (test_import.find_document reads them on either backend)."""

import json
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO
from test_import import find_document, make_datastore, read_outputs, run_aws, start_and_wait

SERIES, INSTANCES, FRAMES, CONFLICT_EVERY = 3, 8, 3, 4


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated") / "study"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "dicom-generate.py"), str(out), "--studies", "1",
         "--series-per-study", str(SERIES), "--instances-per-series", str(INSTANCES), "--frames", str(FRAMES),
         "--rows", "64", "--cols", "96", "--bits", "12", "--signed", "--conflict-every", str(CONFLICT_EVERY),
         "--seed", "7", "--list-sop-uids"],
        check=True, capture_output=True, text=True)
    summary = json.loads(proc.stdout)
    assert summary["files"] == SERIES * INSTANCES and summary["frames"] == SERIES * INSTANCES * FRAMES
    return out, summary


def test_generated_study_primary_and_conflicting_image_sets(server, study, tmp_path):
    src, summary = study
    ds = make_datastore(server, "import-generated")
    run_aws(server, "s3", "mb", "s3://gen")
    run_aws(server, "s3", "cp", "--recursive", str(src), "s3://gen/in/")
    props, _ = start_and_wait(server, ds, "s3://gen/in/", "s3://gen/out/")
    assert props["jobStatus"] == "COMPLETED", props
    manifest, lines = read_outputs(server, props, tmp_path / "out")
    job = manifest["jobSummary"]
    assert job["numberOfScannedFiles"] == SERIES * INSTANCES
    assert job["numberOfImportedFiles"] == SERIES * INSTANCES, lines["FAILURE"]
    assert job["numberOfFilesWithCustomerError"] == 0 and job["numberOfFilesWithServerError"] == 0
    assert lines["FAILURE"] == []

    # success.ndjson: conflicting files are in a non-primary image set, the others in the primary one.
    placed = {l["inputFile"]: l["importResponse"] for l in lines["SUCCESS"]}
    assert set(placed) == {f"in/{f}" for f in (pathlib.Path(p).relative_to(src).as_posix()
                                               for p in src.rglob("*.dcm"))}
    sets = {s["imageSetId"]: s for s in job["imageSetsSummary"]}
    assert job["numberOfGeneratedImageSets"] == len(sets) == 2 * SERIES
    n_conflicting = INSTANCES // CONFLICT_EVERY
    primaries = {}
    for series in summary["series"]:
        conflicting = {f"in/{f}" for f in series["conflicting_files"]}
        assert len(conflicting) == n_conflicting
        prefix = "in/" + pathlib.PurePosixPath(series["conflicting_files"][0]).parent.as_posix() + "/"
        files = [f for f in placed if f.startswith(prefix)]
        assert len(files) == INSTANCES
        primary_ids = {placed[f]["imageSetId"] for f in files if f not in conflicting}
        other_ids = {placed[f]["imageSetId"] for f in conflicting}
        assert len(primary_ids) == 1 and len(other_ids) == 1, (primary_ids, other_ids)
        (primary,), (other,) = primary_ids, other_ids
        assert primary != other
        assert all(placed[f]["isPrimary"] is True for f in files if f not in conflicting)
        assert all(placed[f]["isPrimary"] is False for f in conflicting)
        # The manifest's per-image-set summary agrees.
        assert sets[primary] == {"imageSetId": primary, "imageSetVersion": 1, "isPrimary": True,
                                 "numberOfMatchedSOPInstances": INSTANCES - n_conflicting}
        assert sets[other] == {"imageSetId": other, "imageSetVersion": 1, "isPrimary": False,
                               "numberOfMatchedSOPInstances": n_conflicting}
        primaries[series["series_instance_uid"]] = (primary, other, prefix)

        sop = series["sop_instance_uids"]
        want_conflicting = {sop[i - 1] for i in range(CONFLICT_EVERY, INSTANCES + 1, CONFLICT_EVERY)}
        for image_set, want_sops, patient in (
            (primary, set(sop) - want_conflicting, series["patient_id"]),
            (other, want_conflicting, series["conflicting_patient_id"]),
        ):
            doc = find_document(server, ds, image_set)
            assert doc["Patient"]["DICOM"]["PatientID"] == patient
            instances = doc["Study"]["Series"][series["series_instance_uid"]]["Instances"]
            assert set(instances) == want_sops
            assert all(len(i["ImageFrames"]) == FRAMES for i in instances.values())

    # Importing one series again: version 2 of its primary image set; its conflicting instances
    # still go to a non-primary image set.
    series = summary["series"][0]
    primary, _, prefix = primaries[series["series_instance_uid"]]
    series_dir = src / pathlib.PurePosixPath(prefix[len("in/"):])
    run_aws(server, "s3", "cp", "--recursive", str(series_dir), "s3://gen/again/")
    props2, _ = start_and_wait(server, ds, "s3://gen/again/", "s3://gen/out/")
    assert props2["jobStatus"] == "COMPLETED", props2
    manifest2, lines2 = read_outputs(server, props2, tmp_path / "out2")
    job2 = manifest2["jobSummary"]
    assert job2["numberOfImportedFiles"] == INSTANCES, lines2["FAILURE"]
    sets2 = {s["imageSetId"]: s for s in job2["imageSetsSummary"]}
    assert sets2[primary] == {"imageSetId": primary, "imageSetVersion": 2, "isPrimary": True,
                              "numberOfMatchedSOPInstances": INSTANCES - n_conflicting}
    others2 = [s for s in sets2.values() if s["imageSetId"] != primary]
    assert len(others2) == 1 and others2[0]["isPrimary"] is False
    assert others2[0]["numberOfMatchedSOPInstances"] == n_conflicting
    placed2 = {l["inputFile"]: l["importResponse"] for l in lines2["SUCCESS"]}
    conflicting2 = {"again/" + pathlib.PurePosixPath(f).name for f in series["conflicting_files"]}
    assert len(placed2) == INSTANCES
    for f, resp in placed2.items():
        assert resp["isPrimary"] is (f not in conflicting2), f
        assert (resp["imageSetId"] == primary) is (f not in conflicting2), f
    doc = find_document(server, ds, primary)
    assert doc["ImageSetID"] == primary
    instances = doc["Study"]["Series"][series["series_instance_uid"]]["Instances"]
    assert set(instances) == set(series["sop_instance_uids"]) - {
        series["sop_instance_uids"][i - 1] for i in range(CONFLICT_EVERY, INSTANCES + 1, CONFLICT_EVERY)}
