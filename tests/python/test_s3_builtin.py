"""The built-in S3 endpoint (same listener as the HealthImaging API) with the AWS CLI v1 `aws s3`
commands and boto3, as a user uploading a study for an import job would use it."""

import os
import pathlib
import subprocess
import sys

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REPO

AWS = os.environ.get("LIGHTBOX_AWS_CLI") or str(pathlib.Path(sys.executable).parent / "aws")
if not pathlib.Path(AWS).exists():
    AWS = str(REPO / ".venv" / "bin" / "aws")


def aws_s3(server, *args, check=True):
    env = dict(os.environ)
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_PAGER": "",
        }
    )
    cmd = [AWS, "s3", *args, "--endpoint-url", server.url]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, f"{cmd} -> {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def s3_client(server, secret="test"):
    return boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}),
    )


def make_study(root):
    """A folder with nested directories, odd names, an empty file and a 20 MB file."""
    files = {}
    for i in range(12):
        rel = f"study-1/series-{i % 3}/instance {i}.dcm"
        files[rel] = os.urandom(1000 + i)
    files["study-1/series-0/odd+name%41é.dcm"] = b"odd"
    files["study-1/empty.dcm"] = b""
    files["study-2/big.dcm"] = os.urandom(20 * 1024 * 1024 + 7)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def test_aws_cli_copy_list_download_remove(server, tmp_path):
    study = tmp_path / "study"
    files = make_study(study)
    aws_s3(server, "mb", "s3://my-bucket")
    aws_s3(server, "cp", "--recursive", str(study), "s3://my-bucket/in/")

    listed = aws_s3(server, "ls", "--recursive", "s3://my-bucket/in/").stdout
    keys = sorted(line.split(None, 3)[3] for line in listed.splitlines() if line.strip())
    assert keys == sorted(f"in/{rel}" for rel in files)
    sizes = {line.split(None, 3)[3]: int(line.split(None, 3)[2]) for line in listed.splitlines() if line.strip()}
    assert sizes["in/study-2/big.dcm"] == len(files["study-2/big.dcm"])

    top = aws_s3(server, "ls", "s3://my-bucket/in/").stdout
    assert "PRE study-1/" in top and "PRE study-2/" in top

    back = tmp_path / "back"
    aws_s3(server, "cp", "--recursive", "s3://my-bucket/in/", str(back))
    for rel, data in files.items():
        assert (back / rel).read_bytes() == data, rel

    # The big file went up in parts (awscli's multipart threshold is 8 MB): its ETag says so.
    head = s3_client(server).head_object(Bucket="my-bucket", Key="in/study-2/big.dcm")
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]

    aws_s3(server, "rm", "--recursive", "s3://my-bucket/in/")
    assert aws_s3(server, "ls", "--recursive", "s3://my-bucket/").stdout.strip() == ""
    aws_s3(server, "rb", "s3://my-bucket")
    missing = aws_s3(server, "ls", "s3://my-bucket/", check=False)
    assert missing.returncode != 0 and "NoSuchBucket" in missing.stderr


def test_boto3_paginates_with_small_pages(server):
    s3 = s3_client(server)
    s3.create_bucket(Bucket="paged")
    keys = sorted(f"in/{d}/{i:03d}.dcm" for d in ("a", "b", "c/d") for i in range(20))
    for k in keys:
        s3.put_object(Bucket="paged", Key=k, Body=k.encode())
    s3.put_object(Bucket="paged", Key="out/ignored", Body=b"")

    pages = list(
        s3.get_paginator("list_objects_v2").paginate(Bucket="paged", Prefix="in/", PaginationConfig={"PageSize": 7})
    )
    assert all(p["KeyCount"] <= 7 for p in pages)
    assert len(pages) == (len(keys) + 6) // 7
    got = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert got == keys

    got_v1 = [
        o["Key"]
        for p in s3.get_paginator("list_objects").paginate(Bucket="paged", Prefix="in/", PaginationConfig={"PageSize": 7})
        for o in p.get("Contents", [])
    ]
    assert got_v1 == keys

    body = s3.get_object(Bucket="paged", Key=keys[5], Range="bytes=3-5")["Body"].read()
    assert body == keys[5].encode()[3:6]

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="paged", Key="in/missing")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="no-such-bucket")
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket="paged")
    assert e.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as e:
        s3_client(server, secret="wrong").list_buckets()
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_healthimaging_still_served_on_the_same_listener(server):
    s3_client(server).create_bucket(Bucket="side-by-side")
    assert server.client().list_datastores()["datastoreSummaries"] == []


def test_builtin_s3_can_be_turned_off(make_server):
    srv = make_server(env={"LIGHTBOX_BUILTIN_S3": "false"})
    with pytest.raises(ClientError) as e:
        s3_client(srv).list_buckets()
    # The request falls through to the HealthImaging pipeline, which refuses the s3 signature.
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403, 404)
