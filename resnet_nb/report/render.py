"""The reproduction report: facts (``resnet_nb.report.facts``) -> markdown (zh, en) -> pandoc
-> PDF, DOCX, HTML.

:func:`collect_facts` (in ``report_facts``) computes every number, comparison and verdict
from the run files. The templates ``report/report.<lang>.md`` (Jinja2 markdown, one per
language) only phrase the facts and the verdicts' wording, so the report cannot claim more
than the data carry. ``build_report`` renders the markdown and calls pandoc (from the pinned
``pypandoc-binary`` wheel, else the system) with citeproc and xelatex + xeCJK for the PDF.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_nb.report.facts import DECIMALS, collect_facts, load_inputs
from resnet_nb.report.provenance import REPO

__all__ = [
    "REPORT_SRC", "LANGS", "FORMATS", "SYSDEPS_HINT",
    "load_inputs", "collect_facts", "render_markdown", "build_report", "BuildResult",
    "pandoc_path", "pdf_engine_problem", "add_arguments", "run_cli",
]

REPORT_SRC = REPO / "report"            # templates, references.bib, csl/
LANGS = ("zh", "en")
FORMATS = ("pdf", "docx", "html")
PDF_ENGINE = "xelatex"
CJK_FONTS = ("Noto Serif CJK SC", "Noto Sans CJK SC", "Source Han Serif SC", "Source Han Sans SC")
SYSDEPS_HINT = ("install it with `make sysdeps` (Debian/Ubuntu: apt-get install texlive-xetex "
                "texlive-lang-chinese fonts-noto-cjk poppler-utils)")
CSL = {"zh": "csl/china-national-standard-gb-t-7714-2015-numeric.csl", "en": "csl/ieee.csl"}
PANDOC_LANG = {"zh": "zh-CN", "en": "en-US"}
# DOCX and HTML: pandoc words "Figure"/"Table" from translations/<lang>.yaml, and its Chinese
# file is zh-Hans (zh-CN would fall back to English captions)
CAPTION_LANG = {"zh": "zh-Hans", "en": "en-US"}


# --------------------------------------------------------------------------- markdown

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|$@~^])")


def _md(text: Any) -> str:
    """Escape text for pandoc markdown (commit subjects, paths, environment strings); a
    hyphen after a hyphen is escaped too, so ``--flag`` is not typeset as an en dash."""
    return re.sub(r"(?<=-)-", r"\\-", _MD_SPECIAL.sub(r"\\\1", str(text)))


def _fixed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.{DECIMALS}f}"


def _signed_pp(x: float | None) -> str:
    """A difference of fractions as signed percentage points: 0.0358 -> '+3.58'."""
    return "n/a" if x is None else f"{100 * x:+.2f}"


def _environment_jinja():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(REPORT_SRC)), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
        comment_start_string="{##", comment_end_string="##}")  # "{#" is pandoc's id syntax
    env.filters.update(sig3=lambda x: "n/a" if x is None else (f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"),
                       f4=_fixed, pp=_signed_pp, md=_md,
                       thousands=lambda n: "n/a" if n is None else f"{int(n):,}",
                       m2=lambda x: "n/a" if x is None else f"{x:.2f}M",
                       pct2=lambda x: "n/a" if x is None else f"{x:.2f}")
    return env


def render_markdown(facts: dict, lang: str) -> str:
    """The report's markdown in ``lang`` (``report/report.<lang>.md`` filled with ``facts``)."""
    if lang not in LANGS:
        raise ValueError(f"language must be one of {', '.join(LANGS)} (or all); got {lang!r}")
    return _environment_jinja().get_template(f"report.{lang}.md").render(**facts)


# --------------------------------------------------------------------------- pandoc

def pandoc_path() -> str:
    """The pandoc of the pinned ``pypandoc-binary`` wheel, else one on PATH."""
    try:
        import pypandoc

        return pypandoc.get_pandoc_path()
    except (ImportError, OSError):
        found = shutil.which("pandoc")
        if found:
            return found
    raise FileNotFoundError("pandoc not found: install the pinned wheel (pip install pypandoc-binary==1.17, "
                            "part of make install) or a system pandoc >= 3.1")


def _cjk_font() -> str | None:
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    families = {f.strip() for line in out.splitlines() for f in line.split(",")}
    for name in CJK_FONTS:
        if name in families:
            return name
    return sorted(families)[0] if families else None


def pdf_engine_problem(lang: str) -> str | None:
    """Why the PDF cannot be built here (engine, xeCJK, CJK font), or None when it can."""
    if shutil.which(PDF_ENGINE) is None:
        return f"the PDF engine {PDF_ENGINE} is not installed; {SYSDEPS_HINT}"
    if lang == "zh":
        kpse = shutil.which("kpsewhich")
        if kpse and subprocess.run([kpse, "xeCJK.sty"], capture_output=True).returncode != 0:
            return f"the LaTeX package xeCJK (texlive-lang-chinese) is not installed; {SYSDEPS_HINT}"
        if _cjk_font() is None:
            return f"no Chinese font (e.g. Noto Serif CJK SC, fonts-noto-cjk) is installed; {SYSDEPS_HINT}"
    return None


@dataclass
class BuildResult:
    """What ``build_report`` wrote, and what it could not build (one line each)."""

    outputs: list[Path] = field(default_factory=list)
    markdown: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _pandoc_args(lang: str, fmt: str, md: Path, out: Path, fig_dir: Path, facts: dict) -> list[str]:
    # zh: no smart quotes: an English apostrophe (commit subjects, names) stays ASCII, set in the
    # Latin font, instead of a curly one xeCJK sets full-width ("Welch’ s"); the Chinese text's own
    # quotation marks are literal characters
    source = "markdown+east_asian_line_breaks" + ("-smart" if lang == "zh" else "")
    args = [pandoc_path(), str(md), f"--from={source}", "--standalone", "--citeproc",
            f"--bibliography={REPORT_SRC / 'references.bib'}", f"--csl={REPORT_SRC / CSL[lang]}",
            f"--resource-path={fig_dir}{os.pathsep}{REPORT_SRC}", "--toc", "--toc-depth=2",
            "-M", f"lang={(PANDOC_LANG if fmt == 'pdf' else CAPTION_LANG)[lang]}", "-o", str(out)]
    if fmt == "pdf":
        args += [f"--pdf-engine={PDF_ENGINE}", "-V", "papersize=a4", "-V", "geometry:margin=2.2cm",
                 "-V", "fontsize=11pt", "-V", "colorlinks=true", "-V", "linestretch=1.15"]
        args.append(f"--include-in-header={REPORT_SRC / 'latex' / 'header.tex'}")
        font = _cjk_font()
        if font:  # xeCJK with a CJK font; English keeps Latin quotes half-width
            args += ["-V", f"CJKmainfont={font}"]
            if lang == "en":
                args.append(f"--include-in-header={REPORT_SRC / 'latex' / 'en.tex'}")
    elif fmt == "html":
        args += ["--embed-resources", "--mathml", "-V", "maxwidth=54em"]
    return args


def build_report(run_id: str, langs: tuple[str, ...] | list[str] = LANGS,
                 formats: tuple[str, ...] | list[str] = FORMATS, runs_dir: str = "experiments",
                 figures_dir: str = "report/figures", out_dir: str = "report/build") -> BuildResult:
    """Render ``report.<lang>.md`` and convert it to each format under ``<out_dir>/<run_id>/``.

    Bad input is refused before anything is written (mixed presets or datasets, missing
    summary). A format that cannot be built (no xelatex, a pandoc failure) is recorded in
    ``errors`` while the other formats are still built.
    """
    for lang in langs:
        if lang not in LANGS:
            raise ValueError(f"language must be one of {', '.join(LANGS)} or all; got {lang!r}")
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    inputs = load_inputs(run_id, runs_dir, figures_dir)
    facts = collect_facts(inputs, runs_dir=str(runs_dir), figures_dir=str(figures_dir), out_dir=str(out_dir))
    build = Path(out_dir) / run_id
    build.mkdir(parents=True, exist_ok=True)
    result = BuildResult()
    if inputs["exported"]:
        result.warnings.append(f"no summary.json yet: ran the analysis into {inputs['figures_dir']}")
    if inputs["refreshed"]:
        result.warnings.append(f"summary.json was older than the run files of {', '.join(inputs['refreshed'])}: "
                               f"re-ran the analysis into {inputs['figures_dir']}")
    pandoc_path()  # no pandoc at all: one clear error before anything is converted
    for lang in langs:
        md = build / f"report.{lang}.md"
        md.write_text(render_markdown(facts, lang), encoding="utf-8")
        result.markdown.append(md)
        # DOCX and HTML first: they need only pandoc, so they exist even when the PDF fails
        for fmt in sorted(formats, key=lambda f: f == "pdf"):
            out = build / f"report.{lang}.{fmt}"
            if fmt == "pdf":
                problem = pdf_engine_problem(lang)
                if problem:
                    result.errors.append(f"{out} not built: {problem}")
                    continue
            # absolute paths: pandoc runs inside the build folder (its working files land there)
            args = _pandoc_args(lang, fmt, md.resolve(), out.resolve(), Path(inputs["figures_dir"]).resolve(), facts)
            proc = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=build)
            log = build / f"pandoc.{lang}.{fmt}.log"
            log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
            missing_chars = sorted(set(re.findall(r"Missing character: There is no (\S+)", proc.stderr)))
            if missing_chars:
                result.warnings.append(f"{out}: font lacks glyphs {' '.join(missing_chars)} (see {log})")
            if proc.returncode != 0 or not out.is_file():
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                result.errors.append(f"{out} not built: pandoc exited {proc.returncode} ({last}); see {log}")
                continue
            result.outputs.append(out)
    return result


# --------------------------------------------------------------------------- CLI

def _split(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    if items == ["all"]:
        return list(allowed)
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise ValueError(f"{what} must be a comma list of {', '.join(allowed)} (or all); got {value!r}")
    return list(dict.fromkeys(items))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", default="", help="run id to report (default: the newest complete "
                        "reproduction under --runs-dir, else the newest one published in report/published/, "
                        "else the newest run id with the most models)")
    parser.add_argument("--lang", default="all", help="zh, en or all")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma list of pdf, docx, html")
    parser.add_argument("--runs-dir", default="experiments", help="root folder of run directories")
    parser.add_argument("--figures-dir", default="report/figures",
                        help="root folder of the analysis outputs (<dir>/<run_id>/summary.json)")
    parser.add_argument("--out-dir", default="report/build", help="the report goes to <dir>/<run_id>/")


def run_cli(args: argparse.Namespace) -> int:
    import sys

    from resnet_nb.runs.published import PUBLISHED_DIR, locate

    langs = _split(args.lang, LANGS, "--lang")
    formats = _split(args.formats, FORMATS, "--formats")
    if args.run_id:
        from resnet_nb.runs.rundir import check_run_id

        check_run_id(args.run_id, "--run-id")
    else:
        from resnet_nb.analysis.aggregate import choose_run_id
        from resnet_nb.runs.published import newest_published
        from resnet_nb.runs.rundir import list_run_ids

        newest = newest_published(PUBLISHED_DIR, exclude=list_run_ids(args.runs_dir))  # an id in both: runs_dir's
        args.run_id, why = choose_run_id(args.runs_dir, published=(newest, PUBLISHED_DIR) if newest else None)
        print(f"resnet-nb report: run id {args.run_id}: {why} (choose another with --run-id, "
              f"make report RUN_ID=...)", file=sys.stderr)
    run_id = args.run_id
    where = locate(run_id, args.runs_dir, args.figures_dir, PUBLISHED_DIR)  # experiments/<id>, else report/published/<id>
    if where.published:
        print(f"resnet-nb report: {Path(args.runs_dir) / run_id} is absent: building from the published "
              f"copy {where.runs_dir / run_id}/", file=sys.stderr)
    result = build_report(run_id, langs, formats, str(where.runs_dir), str(where.figures_dir), args.out_dir)
    for path in result.outputs:
        print(path)
    for w in result.warnings:
        print(f"resnet-nb report: warning: {w}", file=sys.stderr)
    for e in result.errors:
        print(f"resnet-nb report: error: {e}", file=sys.stderr)
    return 2 if result.errors else 0
