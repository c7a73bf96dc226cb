#!/usr/bin/env python3
"""Driver of scripts/bench-import.sh (see there): DICOM import throughput of one `lightbox` and
where its time goes, with OpenJPH and `cp` as references on the same data.

    bench-import.py --bin target/release/lightbox \
        --profile target/release/examples/import-profile --work /tmp/dir \
        [--instances 500] [--frames 200] [--reps 1] [--ojph-every 1]

For each case (a 512x512 16-bit CT series of single-frame files; one multi-frame instance),
generates the files (scripts/dicom-generate.py, explicit VR LE), uploads them with
`aws s3 cp --recursive` to the server's built-in S3, starts one import job per repetition
(boto3, so no CLI start-up in the timing) and polls GetDICOMImportJob every 50 ms until
COMPLETED; the server's CPU time over the job comes from /proc/PID/stat. Then, outside the
server, `import-profile` times the same files single-threaded (parse, the whole frame pipeline,
HTJ2K encode alone, verification decode alone) and writes them as PGM for `ojph_compress
-reversible true` (its printed "Elapsed time", start-up excluded), and `cp -r` copies the
input once (the physical lower bound: the bytes must at least be read and written).
Prints Markdown tables; everything measured also goes to WORK/results.json.
"""

import argparse
import glob
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import boto3
from botocore.config import Config

REPO = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable
AWS = str(pathlib.Path(PY).parent / "aws")
ROLE = "arn:aws:iam::000000000000:role/BenchImport"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process (all threads), seconds."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def du(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


class Server:
    def __init__(self, binary, work):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = work / "data"
        data.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTBOX_", "AWS_"))}
        self.out = open(work / "server.stdout", "wb")
        self.err = open(work / "server.stderr", "wb")
        self.proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                                      "--data-dir", str(data)],
                                     stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while self.url.encode() not in (work / "server.stdout").read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"lightbox did not start:\n{(work / 'server.stderr').read_text()[-2000:]}")
            time.sleep(0.05)
        cfg = Config(inject_host_prefix=False, retries={"max_attempts": 2, "mode": "standard"},
                     s3={"addressing_style": "path"})
        kw = dict(endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="test",
                  aws_secret_access_key="test", config=cfg)
        self.mi = boto3.client("medical-imaging", **kw)
        self.s3 = boto3.client("s3", **kw)

    def aws(self, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "",
                    "AWS_DISABLE_HOST_PREFIX_INJECTION": "true", "AWS_CONFIG_FILE": "/dev/null",
                    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
        subprocess.run([AWS, *args, "--endpoint-url", self.url], check=True, env=env,
                       stdout=subprocess.DEVNULL)

    def datastore(self, name):
        ds = self.mi.create_datastore(datastoreName=name)["datastoreId"]
        while self.mi.get_datastore(datastoreId=ds)["datastoreProperties"]["datastoreStatus"] != "ACTIVE":
            time.sleep(0.05)
        return ds

    def import_job(self, ds, input_uri, output_uri):
        """Wall seconds from StartDICOMImportJob to COMPLETED, server CPU seconds, properties."""
        cpu0 = cpu_seconds(self.proc.pid)
        t0 = time.perf_counter()
        job = self.mi.start_dicom_import_job(datastoreId=ds, inputS3Uri=input_uri, outputS3Uri=output_uri,
                                             dataAccessRoleArn=ROLE, jobName="bench")["jobId"]
        while True:
            props = self.mi.get_dicom_import_job(datastoreId=ds, jobId=job)["jobProperties"]
            if props["jobStatus"] in ("COMPLETED", "FAILED"):
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(self.proc.pid) - cpu0
        if props["jobStatus"] != "COMPLETED":
            sys.exit(f"import job {job} {props['jobStatus']}: {props.get('message')}")
        bucket, key = props["outputS3Uri"][5:].split("/", 1)
        manifest = json.loads(self.s3.get_object(Bucket=bucket, Key=key + "job-output-manifest.json")["Body"].read())
        return wall, cpu, manifest["jobSummary"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def ojph(pgm_dir):
    """ojph_compress -reversible true on every PGM: (seconds summed, frames, bytes)."""
    total, n, size = 0.0, 0, 0
    for pgm in sorted(glob.glob(str(pgm_dir / "*.pgm"))):
        j2c = pgm[:-4] + ".j2c"
        out = subprocess.run(["ojph_compress", "-i", pgm, "-o", j2c, "-reversible", "true"],
                             capture_output=True, text=True, check=True).stdout
        total += float(next(l for l in out.splitlines() if l.startswith("Elapsed time")).split("=")[1])
        size += os.path.getsize(j2c)
        n += 1
    return total, n, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--profile", required=True, help="the import-profile example binary")
    ap.add_argument("--work", required=True)
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--reps", type=int, default=1, help="import jobs per case (the best is reported)")
    ap.add_argument("--ojph-every", type=int, default=1, help="give every K-th frame to ojph_compress")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cases = [
        ("CT series, 512x512 16-bit", "ct", ["--instances-per-series", str(args.instances), "--seed", "1"]),
        (f"1 instance, {args.frames} frames 512x512 16-bit", "mf",
         ["--instances-per-series", "1", "--frames", str(args.frames), "--seed", "2"]),
    ]
    server = Server(args.bin, work)
    results = []
    try:
        server.aws("s3", "mb", "s3://bench")
        for title, name, gen in cases:
            src = work / "src" / name
            summary = json.loads(subprocess.run(
                [PY, str(REPO / "scripts" / "dicom-generate.py"), str(src), "--bits", "16",
                 "--transfer-syntax", "explicit", *gen], check=True, capture_output=True, text=True).stdout)
            r = {"case": title, "files": summary["files"], "frames": summary["frames"],
                 "input_bytes": summary["bytes"], "generate_s": summary["seconds"]}
            t = time.perf_counter()
            server.aws("s3", "cp", "--recursive", "--quiet", str(src), f"s3://bench/{name}/in/")
            r["upload_s"] = time.perf_counter() - t
            runs = []
            for rep in range(args.reps):
                ds = server.datastore(f"bench-{name}-{rep}")
                wall, cpu, job = server.import_job(ds, f"s3://bench/{name}/in/", f"s3://bench/{name}/out/")
                assert job["numberOfImportedFiles"] == summary["files"], job
                runs.append((wall, cpu))
            r["import_runs"] = runs
            r["import_s"], r["server_cpu_s"] = min(runs)
            # The same files outside the server: CPU breakdown + PGMs for OpenJPH.
            pgm = work / "pgm" / name
            prof = subprocess.run([args.profile, str(src), "--pgm-dir", str(pgm), "--pgm-every",
                                   str(args.ojph_every)], check=True, capture_output=True, text=True)
            r["profile"] = json.loads(prof.stdout)
            r["ojph_s"], r["ojph_frames"], r["ojph_bytes"] = ojph(pgm)
            shutil.rmtree(pgm)
            dst = work / "cp" / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
            r["cp_s"] = time.perf_counter() - t
            shutil.rmtree(dst)
            results.append(r)
            print(f"{title}: {json.dumps(r)}", file=sys.stderr)
    finally:
        server.stop()
    (work / "results.json").write_text(json.dumps(results, indent=1))

    mb = lambda b: b / 1e6  # noqa: E731
    print("| case | files | frames | input MB | import s | instances/s | frames/s | MB/s | server CPU s (cores busy) | `cp -r` s (MB/s) | upload s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        w = r["import_s"]
        print(f"| {r['case']} | {r['files']} | {r['frames']} | {mb(r['input_bytes']):.0f} | {w:.2f} | "
              f"{r['files'] / w:.1f} | {r['frames'] / w:.1f} | {mb(r['input_bytes']) / w:.1f} | "
              f"{r['server_cpu_s']:.2f} ({r['server_cpu_s'] / w:.2f}) | "
              f"{r['cp_s']:.2f} ({mb(r['input_bytes']) / r['cp_s']:.0f}) | {r['upload_s']:.2f} |")
    print()
    print("Single-thread CPU seconds on the same files, outside the server (import-profile), and OpenJPH:")
    print()
    print("| case | parse s | frame pipeline s | HTJ2K encode s | verify decode s | encode ÷ import wall | "
          "ours ms/frame | ojph ms/frame | ours ÷ ojph | ours bytes ÷ ojph | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        p = r["profile"]
        ours = p["encode_ms_per_frame"]
        theirs = r["ojph_s"] * 1e3 / max(1, r["ojph_frames"])
        # Sizes compared on the frames both encoded (every frame unless --ojph-every > 1).
        size_ratio = p["htj2k_bytes"] / p["frames"] / (r["ojph_bytes"] / max(1, r["ojph_frames"]))
        print(f"| {r['case']} | {p['parse_s']:.2f} | {p['process_s']:.2f} | {p['encode_s']:.2f} | "
              f"{p['verify_decode_s']:.2f} | {p['encode_s'] / r['import_s'] * 100:.0f} % | {ours:.2f} | "
              f"{theirs:.2f} | {ours / theirs:.2f} | {size_ratio:.4f} | {p['ratio']:.2f} |")


if __name__ == "__main__":
    main()
