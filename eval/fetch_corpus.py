#!/usr/bin/env python3
"""Fetch the second, independent test corpus: SQLite's own documentation (Debian sqlite3-doc).

    python eval/fetch_corpus.py .rag/corpora/sqlite

downloads the pinned Debian package (``apt-get download``, no root needed), extracts it
(``dpkg-deb -x``) into a temporary folder and copies the HTML pages listed in ``FILES``
flat into DEST, keeping their base names. The .deb is kept in ~/.cache/rag/corpora/
(or $XDG_CACHE_HOME/rag/corpora/), so a second run needs no network. A DEST that already
holds every listed page is left alone.

If the pinned version is no longer in the archive, the current one is downloaded with a
warning (the pages the test set relies on may then differ). Standard library only.
The test set over these pages is eval/sqlite_testset.yaml.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "sqlite3-doc"
VERSION = "3.40.1-2+deb12u2"  # Debian 12 (bookworm); SQLite 3.40.1 documentation
DOC_DIR = "usr/share/doc/sqlite3"  # where the pages live inside the package

# The selection: prose pages (each under ~130 KB of HTML), paths relative to DOC_DIR.
# Every page eval/sqlite_testset.yaml relies on is here, plus others on the same topics.
FILES = [
    "about.html",
    "amalgamation.html",
    "appfileformat.html",
    "autoinc.html",
    "backup.html",
    "cli.html",
    "copyright.html",
    "cpu.html",
    "crew.html",
    "csv.html",
    "cves.html",
    "datatype3.html",
    "dbhash.html",
    "different.html",
    "eqp.html",
    "errlog.html",
    "expridx.html",
    "famous.html",
    "fasterthanfs.html",
    "faq.html",
    "features.html",
    "flextypegood.html",
    "floatingpoint.html",
    "footprint.html",
    "foreignkeys.html",
    "fullsql.html",
    "gencol.html",
    "hirely.html",
    "howtocompile.html",
    "howtocorrupt.html",
    "inmemorydb.html",
    "intern-v-extern-blob.html",
    "isolation.html",
    "json1.html",
    "lang_analyze.html",
    "lang_comment.html",
    "lang_conflict.html",
    "lang_corefunc.html",
    "lang_datefunc.html",
    "lang_explain.html",
    "lang_keywords.html",
    "lang_mathfunc.html",
    "lang_naming.html",
    "lang_savepoint.html",
    "lang_transaction.html",
    "lang_vacuum.html",
    "limits.html",
    "loadext.html",
    "lockingv3.html",
    "lts.html",
    "mmap.html",
    "mostdeployed.html",
    "nulls.html",
    "omitted.html",
    "onefile.html",
    "pgszchng2016.html",
    "prosupport.html",
    "psow.html",
    "queryplanner.html",
    "quirks.html",
    "recovery.html",
    "rowidtable.html",
    "rtree.html",
    "security.html",
    "selfcontained.html",
    "series.html",
    "serverless.html",
    "sharedcache.html",
    "sqlar.html",
    "sqldiff.html",
    "stricttables.html",
    "support.html",
    "tempfiles.html",
    "testing.html",
    "threadsafe.html",
    "transactional.html",
    "uri.html",
    "useovernet.html",
    "versionnumbers.html",
    "wal.html",
    "whentouse.html",
    "whyc.html",
    "whynotgit.html",
    "withoutrowid.html",
    "zeroconf.html",
]


def dest_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


_names = [dest_name(p) for p in FILES]
assert len(set(_names)) == len(_names), "FILES must have unique base names"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag" / "corpora"


def deb_version(deb: Path) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def cached_debs(cache: Path) -> list[Path]:
    return sorted(cache.glob(f"{PACKAGE}_*.deb"))


def apt_download(spec: str, cache: Path) -> Path | None:
    """`apt-get download SPEC` into the cache; the new .deb, or None when apt failed."""
    before = set(cached_debs(cache))
    cmd = ["apt-get", "download", spec]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # As root, apt would try to drop to the _apt user, which cannot write to a home cache.
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    print(f"Running: {' '.join(cmd)} (in {cache})")
    proc = subprocess.run(cmd, cwd=cache, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  apt-get failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        return None
    new = [d for d in cached_debs(cache) if d not in before]
    if new:
        return new[0]
    # apt-get reports success without a new file when that .deb is already in the cache
    if "=" in spec:
        wanted = spec.split("=", 1)[1]
        return next((d for d in cached_debs(cache) if deb_version(d) == wanted), None)
    debs = cached_debs(cache)
    return max(debs, key=lambda d: d.stat().st_mtime) if debs else None


def get_deb(cache: Path) -> Path:
    """The pinned .deb from the cache or apt; else the current one (with a warning)."""
    cache.mkdir(parents=True, exist_ok=True)
    for deb in cached_debs(cache):
        if deb_version(deb) == VERSION:
            print(f"Using cached {deb}")
            return deb
    deb = apt_download(f"{PACKAGE}={VERSION}", cache)
    if deb:
        return deb
    print(f"WARNING: {PACKAGE} {VERSION} is not available; falling back to the current version. "
          "The test set was written for the pinned version and some answers may differ.", file=sys.stderr)
    deb = apt_download(PACKAGE, cache)
    if deb:
        print(f"WARNING: using {PACKAGE} {deb_version(deb)} instead of {VERSION}", file=sys.stderr)
        return deb
    others = cached_debs(cache)
    if others:
        print(f"WARNING: download failed; using cached {others[-1].name} ({deb_version(others[-1])}) "
              f"instead of {VERSION}", file=sys.stderr)
        return others[-1]
    sys.exit(f"Could not download {PACKAGE}. Check the network and run `apt-get update` "
             "(as root) so apt knows the package, then try again.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder to fill, e.g. .rag/corpora/sqlite")
    args = parser.parse_args(argv)
    dest: Path = args.dest

    missing = [p for p in FILES if not (dest / dest_name(p)).is_file()]
    if not missing:
        print(f"{dest} already holds all {len(FILES)} pages of {PACKAGE}; nothing to do.")
        return 0

    deb = get_deb(cache_dir())
    dest.mkdir(parents=True, exist_ok=True)
    copied, absent = 0, []
    with tempfile.TemporaryDirectory(prefix="rag-corpus-") as tmp:
        print(f"Extracting {deb.name} ...")
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        doc = Path(tmp) / DOC_DIR
        for rel in missing:
            src = doc / rel
            if not src.is_file():
                absent.append(rel)
                continue
            shutil.copyfile(src, dest / dest_name(rel))
            copied += 1
    total = sum((dest / n).stat().st_size for n in _names if (dest / n).is_file())
    print(f"Copied {copied} page(s) into {dest} "
          f"({len(FILES) - len(missing)} were already there); "
          f"{len(FILES) - len(absent)}/{len(FILES)} pages, {total / 1e6:.2f} MB in all.")
    if absent:
        print(f"WARNING: {len(absent)} listed page(s) are not in {deb.name}: {', '.join(absent)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
