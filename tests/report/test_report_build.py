"""End to end: a real (tiny) reproduction on the synthetic fixture with the real analysis
(conftest's ``tiny_reproduction``, shared with test_publish.py), then the report in both
languages (built side by side) and all three formats; pdftotext checks that the PDFs carry
the numbers of summary.json, the computed verdict and the synthetic-data notice on page 1.

CI installs xelatex (``make sysdeps`` in .ci/run), so the PDF part runs there; it is skipped,
with the reason, only on a machine without xelatex.
"""
from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from resnet_nb.report import render

RUN_ID = "t"  # conftest's tiny_reproduction: Plain/ResNet-8 and -14, the 2x2 design at a CPU-test size


def _pdftext(path, first=None, last=None) -> str:
    args = ["pdftotext", "-layout"]
    if first:
        args += ["-f", str(first), "-l", str(last)]
    out = subprocess.run([*args, str(path), "-"], capture_output=True, text=True, check=True).stdout
    return " ".join(out.split())


def _pages(path) -> list[str]:
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return [" ".join(p.split()) for p in out.split("\f")]


def _no_claims(en: str, zh: str) -> None:
    """The verdict sections (4.5 to the conclusions) say no "shown"/「成立」 and no Fig. 6 reading."""
    en_v = en[en.index("4.5.1"):en.rindex("References")]
    zh_v = zh[zh.index("4.5.1"):zh.rindex("参考文献")]
    assert "shown" not in en_v.replace("not shown", "") and "not overfitting" not in en_v
    assert "成立" not in zh_v and "过拟合" not in zh_v
    assert "not assessable: synthetic data" in en_v and "无法判断：合成数据" in zh_v


def _build_each_language_at_once(runs, figs, out) -> render.BuildResult:
    """``report.build_report`` of every format, one call per language, the calls in two threads
    (pandoc and xelatex are subprocesses: the two languages build side by side on 2 cores, not
    one after the other); their outputs, errors and warnings merged."""
    with ThreadPoolExecutor(len(render.LANGS)) as pool:
        parts = list(pool.map(lambda lang: render.build_report(RUN_ID, [lang], render.FORMATS, str(runs),
                                                               str(figs), str(out)), render.LANGS))
    merged = render.BuildResult()
    for part in parts:
        merged.outputs += part.outputs
        merged.errors += part.errors
        merged.warnings += part.warnings
        merged.markdown += part.markdown
    return merged


@pytest.mark.slow
def test_report_of_a_real_smoke_run_in_all_formats(tiny_reproduction, tmp_path):
    assert tiny_reproduction["run_id"] == RUN_ID
    runs, figs = tiny_reproduction["experiments"], tiny_reproduction["figures"]
    summary = json.loads((figs / RUN_ID / "summary.json").read_text())
    result = _build_each_language_at_once(runs, figs, tmp_path / "build")
    build = tmp_path / "build" / RUN_ID
    numbers = [f"{s[k]:.4f}" for s in summary["models"].values()
               for k in ("best_test_acc", "last_test_acc", "final_train_loss")]
    facts = render.collect_facts(render.load_inputs(RUN_ID, runs, figs), str(runs), str(figs))
    deg = facts["cmp"]["degradation_acc"]
    verdict = f"Plain-14 final-epoch test accuracy {deg['va']:.4f} {deg['op']} Plain-8 {deg['vb']:.4f}"

    for lang in render.LANGS:
        html = " ".join((build / f"report.{lang}.html").read_text(encoding="utf-8").split())
        assert all(n in html for n in numbers), lang
        assert html.count("data:image/png;base64") >= 3  # the figures are embedded
        with zipfile.ZipFile(build / f"report.{lang}.docx") as z:
            xml = z.read("word/document.xml").decode()
            assert all(n in xml for n in numbers) and any(n.startswith("word/media/") for n in z.namelist())
    en_html = html_lib.unescape(" ".join((build / "report.en.html").read_text().split()))
    zh_html = html_lib.unescape(" ".join((build / "report.zh.html").read_text(encoding="utf-8").split()))
    assert verdict in en_html
    # a synthetic smoke run claims nothing: every verdict is "not assessable"
    assert all(x["en"] == "not assessable: synthetic data" for x in facts["cmp"].values())
    _no_claims(en_html, zh_html)
    # zh DOCX/HTML captions carry no English "Figure"/"Table" (only the paper's "Fig. 6"/"Table 6")
    captions = re.findall(r"<(?:fig)?caption[^>]*>(.*?)</(?:fig)?caption>", zh_html)
    with zipfile.ZipFile(build / "report.zh.docx") as z:
        xml = z.read("word/document.xml").decode()
    captions += [re.sub(r"<[^>]+>", "", c) for c in re.findall(
        r'<w:pStyle w:val="(?:Image|Table)Caption" />.*?</w:p>', xml)]
    assert len(captions) >= 8 and not [c for c in captions if re.search(r"\b(Figure|Table)\b(?! 6)", c)]
    assert "translation" not in (build / "pandoc.zh.docx.log").read_text()  # zh-Hans terms found

    if shutil.which("xelatex") is None:
        assert all("make sysdeps" in e for e in result.errors) and len(result.errors) == 2
        pytest.skip("xelatex is not installed (run `make sysdeps`): DOCX/HTML checked, PDF not built")
    assert result.errors == [] and result.warnings == []  # no missing glyphs either
    assert sorted(p.name for p in result.outputs) == sorted(
        f"report.{lang}.{fmt}" for lang in render.LANGS for fmt in render.FORMATS)
    en, zh = _pdftext(build / "report.en.pdf"), _pdftext(build / "report.zh.pdf")
    for text in (en, zh):
        missing = [n for n in numbers if n not in text]
        assert not missing, f"numbers of summary.json not in the PDF: {missing}"
    assert verdict in en
    _no_claims(en, zh)
    assert "Synthetic data, not CIFAR-10." in _pdftext(build / "report.en.pdf", 1, 1)
    # figures stay under their section heading (float placement H), the rule table is printed
    for lang, heading, caption in (("en", "4.3 Curves", "Training loss per epoch"), ("zh", "4.3 曲线图", "训练 loss 曲线")):
        pages = _pages(build / f"report.{lang}.pdf")
        at = [i for i, p in enumerate(pages) if re.search(re.escape(heading) + r"(?! \.)", p)]  # not the contents
        assert len(at) == 1 and caption in pages[at[0]], f"{lang}: the first curve figure is not on the page of {heading}"
    assert "Table 3-4. Rules for every verdict" in en and "表 3-4 各项结论的判定规则" in zh
    assert "Welch" in en and "0.63" in zh and "Holm" in en
    for lang in render.LANGS:  # shell line continuations only inside code blocks, never in inline code
        md = re.sub(r"```.*?```", "", (build / f"report.{lang}.md").read_text(encoding="utf-8"), flags=re.S)
        assert "\\\n" not in md, lang
    assert "本报告使用合成数据" in _pdftext(build / "report.zh.pdf", 1, 1)
    assert "第四章 程序测试" in zh and "开发日志" in zh
    assert "HE K. ZHANG X. REN S." in zh  # GB/T 7714 via citeproc
    assert "K. He, X. Zhang, S. Ren, and J. Sun" in en  # IEEE via citeproc
