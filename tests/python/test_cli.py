"""The AWS CLI (v1, `.venv/bin/aws`) against the real `lightbox` binary, as a new user would run it."""

import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

from conftest import REPO

AWS = os.environ.get("LIGHTBOX_AWS_CLI") or str(pathlib.Path(sys.executable).parent / "aws")
if not pathlib.Path(AWS).exists():
    AWS = str(REPO / ".venv" / "bin" / "aws")


def aws(server, *args, env=None, check=True):
    full_env = dict(os.environ)
    full_env.update(
        {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_PAGER": "",
        }
    )
    full_env.update(env or {})
    cmd = [AWS, "medical-imaging", *args, "--endpoint-url", server.url, "--output", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=120)
    if check:
        assert proc.returncode == 0, f"{cmd} -> {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        return json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc


def test_new_user_walkthrough(server):
    created = aws(server, "create-datastore", "--datastore-name", "demo")
    assert created["datastoreStatus"] == "CREATING"
    ds = created["datastoreId"]

    listed = aws(server, "list-datastores")
    assert [s["datastoreId"] for s in listed["datastoreSummaries"]] == [ds]
    assert listed["datastoreSummaries"][0]["datastoreName"] == "demo"

    got = aws(server, "get-datastore", "--datastore-id", ds)["datastoreProperties"]
    assert got["datastoreId"] == ds
    assert got["datastoreName"] == "demo"
    assert got["datastoreArn"] == f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{ds}"
    # CLI v1 (cli_timestamp_format = none) prints timestamps exactly as received: epoch numbers.
    assert isinstance(got["createdAt"], (int, float)) and got["createdAt"] > 1.7e9, got

    arn = got["datastoreArn"]
    assert aws(server, "tag-resource", "--resource-arn", arn, "--tags", "Deployment=Development,Team=Radiology") is None
    tags = aws(server, "list-tags-for-resource", "--resource-arn", arn)["tags"]
    assert tags == {"Deployment": "Development", "Team": "Radiology"}
    assert aws(server, "untag-resource", "--resource-arn", arn, "--tag-keys", "Deployment", "Team") is None
    assert aws(server, "list-tags-for-resource", "--resource-arn", arn)["tags"] == {}

    # DeleteDatastore needs the data store to have left CREATING.
    for _ in range(200):
        if aws(server, "get-datastore", "--datastore-id", ds)["datastoreProperties"]["datastoreStatus"] == "ACTIVE":
            break
    deleted = aws(server, "delete-datastore", "--datastore-id", ds)
    assert deleted == {"datastoreId": ds, "datastoreStatus": "DELETING"}


def test_cli_pagination(server):
    ids = [aws(server, "create-datastore", "--datastore-name", f"cli{i}")["datastoreId"] for i in range(4)]
    # The CLI follows nextToken itself; --page-size sets maxResults per call.
    listed = aws(server, "list-datastores", "--page-size", "1")
    assert [s["datastoreId"] for s in listed["datastoreSummaries"]] == list(reversed(ids))
    first = aws(server, "list-datastores", "--max-items", "3")
    assert len(first["datastoreSummaries"]) == 3
    assert "NextToken" in first


def test_validation_error_exit_code(server):
    proc = aws(server, "create-datastore", "--datastore-name", "bad name!", check=False)
    assert proc.returncode == 255, proc
    assert "ValidationException" in proc.stderr
    assert "datastoreName" in proc.stderr
    assert "CreateDatastore" in proc.stderr

    proc = aws(server, "get-datastore", "--datastore-id", uuid.uuid4().hex, check=False)
    assert proc.returncode == 255
    assert "ResourceNotFoundException" in proc.stderr


def test_bad_credentials_exit_code(server):
    proc = aws(server, "list-datastores", env={"AWS_SECRET_ACCESS_KEY": "wrong"}, check=False)
    assert proc.returncode == 255
    assert "InvalidSignatureException" in proc.stderr


def test_runtime_operation_with_env_disable_host_prefix_injection(server):
    ds = aws(server, "create-datastore", "--datastore-name", "rt")["datastoreId"]
    missing = uuid.uuid4().hex
    proc = aws(
        server,
        "get-image-set",
        "--datastore-id",
        ds,
        "--image-set-id",
        missing,
        env={"AWS_DISABLE_HOST_PREFIX_INJECTION": "true"},
        check=False,
    )
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr, proc.stderr
    assert missing in proc.stderr
