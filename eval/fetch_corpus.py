#!/usr/bin/env python3
"""Fetch the benchmark's document corpora from pinned Debian packages (kept out of git).

    python eval/fetch_corpus.py .rag/corpora/sqlite                # SQLite's documentation (the default)
    python eval/fetch_corpus.py --corpus gnuplot .rag/corpora/gnuplot
    python eval/fetch_corpus.py --all ~/.cache/rag/corpora         # every corpus into ROOT/NAME

Each corpus is a pinned Debian package: the .deb is downloaded (``apt-get download``) into
~/.cache/rag/corpora/ (or $XDG_CACHE_HOME/rag/corpora/), so a second run needs no network,
extracted (``dpkg-deb -x``) to a temporary folder, and the listed files are copied flat into
DEST under their base names; manual pages are rendered to plain text by groff first (the
reader takes .txt, not roff). A DEST that already holds every listed file is left alone.

| corpus  | package        | genre                                   | test sets                                   |
|---------|----------------|-----------------------------------------|---------------------------------------------|
| sqlite  | sqlite3-doc    | HTML reference pages (85)               | eval/sqlite_testset.yaml, sqlite_broad_…    |
| gnuplot | gnuplot-doc    | one 311-page PDF manual with an outline | eval/blind/gnuplot_*.yaml                   |
| git     | git-doc        | long AsciiDoc handbooks and guides (11) | eval/blind/git_*.yaml                       |
| man     | manpages       | section-7 manual pages (48), as text    | eval/blind/man_*.yaml                       |

The seeds (news) are the fifth corpus and live in the repository. If a pinned version is no
longer in the archive, the current one is used with a warning (answers may then differ).
Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The SQLite selection: prose pages (each under ~130 KB of HTML). Every page eval/sqlite_testset.yaml
# relies on is here, plus others on the same topics.
SQLITE_PAGES = [
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

MAN_PAGES = [
    "signal", "pipe", "fifo", "epoll", "inotify", "socket", "tcp", "udp", "unix", "ip", "capabilities", "credentials",
    "namespaces", "cgroups", "environ", "glob", "regex", "hier", "locale", "charsets", "ascii", "utf-8", "boot", "time",
    "pthreads", "futex", "sem_overview", "shm_overview", "mq_overview", "path_resolution", "symlink", "inode",
    "mount_namespaces", "user_namespaces", "pid_namespaces", "sched", "standards", "feature_test_macros", "vdso",
    "keyrings", "random", "pty", "signal-safety", "aio", "netlink", "packet", "raw", "uri",
]

GIT_GUIDES = [
    "user-manual.txt", "gittutorial.txt", "gittutorial-2.txt", "gitcore-tutorial.txt", "gitworkflows.txt",
    "giteveryday.txt", "gitfaq.txt", "gitsubmodules.txt", "SubmittingPatches.txt", "MyFirstContribution.txt",
    "ReviewingGuidelines.txt",
]


@dataclass(frozen=True)
class Corpus:
    package: str
    version: str
    doc_dir: str  # where the files live inside the package
    files: list[str]  # paths relative to doc_dir
    groff: bool = False  # gzipped roff manual pages, rendered to NAME.txt

    def dest_name(self, rel: str) -> str:
        base = rel.rsplit("/", 1)[-1]
        return base.removesuffix(".gz") + ".txt" if self.groff else base


CORPORA = {
    "sqlite": Corpus("sqlite3-doc", "3.40.1-2+deb12u2", "usr/share/doc/sqlite3", SQLITE_PAGES),
    "gnuplot": Corpus("gnuplot-doc", "5.4.4+dfsg1-2", "usr/share/doc/gnuplot", ["gnuplot.pdf"]),
    "git": Corpus("git-doc", "1:2.39.5-0+deb12u3", "usr/share/doc/git-doc", GIT_GUIDES),
    "man": Corpus("manpages", "6.03-2", "usr/share/man/man7", [f"{p}.7.gz" for p in MAN_PAGES], groff=True),
}
for _c in CORPORA.values():
    assert len({_c.dest_name(f) for f in _c.files}) == len(_c.files), f"{_c.package}: base names must be unique"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag" / "corpora"


def deb_version(deb: Path) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def cached_debs(cache: Path, package: str) -> list[Path]:
    return sorted(cache.glob(f"{package}_*.deb"))


def apt_download(package: str, version: str | None, cache: Path) -> Path | None:
    """`apt-get download PACKAGE[=VERSION]` into the cache; the new .deb, or None when apt failed."""
    before = set(cached_debs(cache, package))
    cmd = ["apt-get", "download", f"{package}={version}" if version else package]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # As root, apt would try to drop to the _apt user, which cannot write to a home cache.
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    print(f"Running: {' '.join(cmd)} (in {cache})")
    proc = subprocess.run(cmd, cwd=cache, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  apt-get failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        return None
    new = [d for d in cached_debs(cache, package) if d not in before]
    if new:
        return new[0]
    # apt-get reports success without a new file when that .deb is already in the cache
    debs = cached_debs(cache, package)
    if version:
        return next((d for d in debs if deb_version(d) == version), None)
    return max(debs, key=lambda d: d.stat().st_mtime) if debs else None


def get_deb(corpus: Corpus, cache: Path) -> Path:
    """The pinned .deb from the cache or apt; else the current one (with a warning)."""
    cache.mkdir(parents=True, exist_ok=True)
    package, version = corpus.package, corpus.version
    for deb in cached_debs(cache, package):
        if deb_version(deb) == version:
            print(f"Using cached {deb}")
            return deb
    deb = apt_download(package, version, cache)
    if deb:
        return deb
    print(f"WARNING: {package} {version} is not available; falling back to the current version. "
          "The test sets were written for the pinned version and some answers may differ.", file=sys.stderr)
    deb = apt_download(package, None, cache)
    if deb:
        print(f"WARNING: using {package} {deb_version(deb)} instead of {version}", file=sys.stderr)
        return deb
    others = cached_debs(cache, package)
    if others:
        print(f"WARNING: download failed; using cached {others[-1].name} ({deb_version(others[-1])}) "
              f"instead of {version}", file=sys.stderr)
        return others[-1]
    sys.exit(f"Could not download {package}. Check the network and run `apt-get update` "
             "(as root) so apt knows the package, then try again.")


def render_man(src: Path, dest: Path) -> None:
    """A gzipped roff page as plain text: tables (-t), 80 columns, no hyphenation, no overstrike bold."""
    roff = gzip.decompress(src.read_bytes())
    text = subprocess.run(["groff", "-t", "-man", "-Tutf8", "-P-c", "-P-b", "-P-u", "-rLL=80n", "-rHY=0"],
                          input=roff, capture_output=True, check=True).stdout
    dest.write_bytes(text)


def fetch(corpus: Corpus, dest: Path) -> int:
    """Fill DEST with the corpus's files (those missing); 1 when a listed file is not in the package."""
    missing = [p for p in corpus.files if not (dest / corpus.dest_name(p)).is_file()]
    if not missing:
        print(f"{dest} already holds all {len(corpus.files)} files of {corpus.package}; nothing to do.")
        return 0
    deb = get_deb(corpus, cache_dir())
    dest.mkdir(parents=True, exist_ok=True)
    copied, absent = 0, []
    with tempfile.TemporaryDirectory(prefix="rag-corpus-") as tmp:
        print(f"Extracting {deb.name} ...")
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        doc = Path(tmp) / corpus.doc_dir
        for rel in missing:
            src, out = doc / rel, dest / corpus.dest_name(rel)
            if not src.is_file():
                absent.append(rel)
                continue
            render_man(src, out) if corpus.groff else shutil.copyfile(src, out)
            copied += 1
    names = [corpus.dest_name(p) for p in corpus.files]
    total = sum((dest / n).stat().st_size for n in names if (dest / n).is_file())
    print(f"Copied {copied} file(s) into {dest} ({len(corpus.files) - len(missing)} were already there); "
          f"{len(corpus.files) - len(absent)}/{len(corpus.files)} files, {total / 1e6:.2f} MB in all.")
    if absent:
        print(f"WARNING: {len(absent)} listed file(s) are not in {deb.name}: {', '.join(absent)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder to fill, e.g. .rag/corpora/sqlite (with --all: the folder of corpora)")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="sqlite", help="which corpus (default sqlite)")
    parser.add_argument("--all", action="store_true", help="fetch every corpus into DEST/NAME")
    args = parser.parse_args(argv)
    if args.all:
        return max(fetch(corpus, args.dest / name) for name, corpus in CORPORA.items())
    return fetch(CORPORA[args.corpus], args.dest)


if __name__ == "__main__":
    sys.exit(main())
