"""report.md and report.html come from the same blocks (analysis/document.py): no Markdown is parsed."""

from analysis.document import Bullets, Heading, Image, Lines, Table, bold, para, to_html, to_markdown

BLOCKS = [Heading("InfoMin report: x"), para(bold("Best point"), " a<b | c"), Bullets(("one", "two")), Bullets(()),
          Lines(("first", "second")), Table(("point", "acc"), (("s=1|2", "0.5"),)), Image("MI vs accuracy", "mi.png"),
          Image("views", "missing.png")]


def test_markdown_of_the_blocks():
    assert to_markdown(BLOCKS) == (
        "# InfoMin report: x\n\n**Best point** a<b | c\n\n- one\n- two\n\nfirst\nsecond\n\n"
        "| point | acc |\n|---|---|\n| s=1/2 | 0.5 |\n\n![MI vs accuracy](mi.png)\n\n![views](missing.png)\n")


def test_html_of_the_same_blocks_escapes_text_and_inlines_images(tmp_path):
    (tmp_path / "mi.png").write_bytes(b"\x89PNG")
    page = to_html(BLOCKS, tmp_path)
    assert "<p><b>Best point</b> a&lt;b | c</p>" in page and "<ul><li>one</li><li>two</li></ul>" in page
    assert "<p>first</p>\n<p>second</p>" in page and "<td>s=1|2</td>" in page
    assert "src='data:image/png;base64,iVBORw=='" in page and "(views: no image)" in page
    assert "![" not in page and "**" not in page and "<ul></ul>" not in page
