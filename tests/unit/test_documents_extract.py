"""Crawler text extraction: HTML boilerplate removal, metadata, links, charsets and other formats."""

from __future__ import annotations

import json
import time

import pytest

from documents.extract import (
    MAX_CSV_ROWS,
    ExtractedDocument,
    Heading,
    decode_bytes,
    extract_csv,
    extract_html,
    extract_json,
    extract_markdown,
    extract_plain_text,
)
from documents.formats import SUPPORTED, extract_for
from runtime.errors import ValidationFailed
from tests.pdf import make_pdf

BASE = "https://docs.example.org/3/library/functools.html"

SPHINX_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>functools — Higher-order functions &#8212; Python 3.11.2 documentation</title>
    <link rel="stylesheet" href="../_static/pydoctheme.css" />
    <script src="../_static/doctools.js"></script>
    <link rel="next" title="operator" href="operator.html" />
    <link rel="canonical" href="https://docs.example.org/3/library/functools.html" />
    <style>@media only screen { table.full-width-table { width: 100%; } }</style>
  </head>
<body>
<div class="mobile-nav">
  <input type="checkbox" id="menuToggler" class="toggler__input" role="button" aria-label="Menu" />
  <nav class="nav-content" role="navigation">
    <a href="https://www.python.org/" class="nav-logo"><img src="../_static/py.svg" alt="Logo"/></a>
    <form role="search" class="search" action="../search.html" method="get">
      <svg width="20" height="20"><path d="M15.5 14h-.79"></path></svg>
      <input type="text" name="q" aria-label="Quick search"/>
      <input type="submit" value="Go"/>
    </form>
  </nav>
  <div class="menu-wrapper">
    <nav class="menu" role="navigation" aria-label="main navigation">
      <div>
        <h3><a href="../contents.html">Table of Contents</a></h3>
        <ul><li><a class="reference internal" href="#">functools</a></li></ul>
      </div>
      <div>
        <h4>Previous topic</h4>
        <p class="topless"><a href="itertools.html" title="previous chapter">itertools</a></p>
      </div>
      <div role="note" aria-label="source link">
        <h3>This Page</h3>
        <ul class="this-page-menu">
          <li><a href="../bugs.html">Report a Bug</a></li>
          <li><a href="https://github.com/python/cpython/blob/3.11/Doc/library/functools.rst"
                 rel="nofollow">Show Source</a></li>
        </ul>
      </div>
    </nav>
  </div>
</div>
<div class="related" role="navigation" aria-label="related navigation">
  <h3>Navigation</h3>
  <ul>
    <li class="right"><a href="../genindex.html" title="General Index" accesskey="I">index</a></li>
    <li class="right"><a href="operator.html" title="operator">next</a> |</li>
  </ul>
</div>
<div class="document">
  <div class="documentwrapper">
    <div class="bodywrapper">
      <div class="body" role="main">
  <section id="module-functools">
<span id="functools-higher-order"></span><h1><a class="reference internal" href="#module-functools"><code class="xref py py-mod docutils literal notranslate"><span class="pre">functools</span></code></a> — Higher-order functions<a class="headerlink" href="#module-functools" title="Permalink to this heading">¶</a></h1>
<p><strong>Source code:</strong> <a class="reference external" href="https://github.com/python/cpython/tree/3.11/Lib/functools.py">Lib/functools.py</a></p>
<hr class="docutils" />
<p>The <code class="docutils literal notranslate"><span class="pre">functools</span></code> module is for
higher-order functions:   functions that act on
or return other functions.</p>
<div class="toctree-wrapper compound">
<ul>
<li class="toctree-l1"><a class="reference internal" href="functools-cache.html">Caching helpers</a></li>
<li class="toctree-l1"><a class="reference internal" href="functools-partial.html#partial">Partial objects</a></li>
</ul>
</div>
<dl class="py function">
<dt class="sig sig-object py" id="functools.cache">
<span class="sig-prename descclassname"><span class="pre">&#64;</span></span><span class="sig-prename descclassname"><span class="pre">functools.</span></span><span class="sig-name descname"><span class="pre">cache</span></span><span class="sig-paren">(</span><em class="sig-param"><span class="n"><span class="pre">user_function</span></span></em><span class="sig-paren">)</span><a class="headerlink" href="#functools.cache" title="Permalink to this definition">¶</a></dt>
<dd><p>Simple lightweight unbounded function cache.</p>
<div class="highlight-python3 notranslate"><div class="highlight"><pre><span></span><span class="nd">@cache</span>
<span class="k">def</span> <span class="nf">factorial</span><span class="p">(</span><span class="n">n</span><span class="p">):</span>
    <span class="k">return</span> <span class="n">n</span> <span class="o">*</span> <span class="n">factorial</span><span class="p">(</span><span class="n">n</span><span class="o">-</span><span class="mi">1</span><span class="p">)</span> <span class="k">if</span> <span class="n">n</span> <span class="k">else</span> <span class="mi">1</span>

<span class="o">&gt;&gt;&gt;</span> <span class="n">factorial</span><span class="p">(</span><span class="mi">10</span><span class="p">)</span>
<span class="mi">3628800</span>
</pre></div>
</div>
</dd></dl>

<section id="partial-objects">
<h2><code class="xref py py-class docutils literal notranslate"><span class="pre">partial</span></code> Objects<a class="headerlink" href="#partial-objects" title="Permalink to this heading">¶</a></h2>
<p>Partial objects are callable objects created by <code>partial()</code>.<a class="footnote-reference brackets" href="#id2" id="id1">1</a></p>
<p class="rubric">Footnotes</p>
<aside class="footnote-list brackets">
<aside class="footnote brackets" id="id2" role="note">
<span class="label"><span class="fn-bracket">[</span><a role="doc-backlink" href="#id1">1</a><span class="fn-bracket">]</span></span>
<p>Footnotes are docutils asides and stay.</p>
</aside>
</aside>
</section>
</section>
            <div class="clearer"></div>
          </div>
        </div>
      </div>
      <div class="sphinxsidebar" role="navigation" aria-label="main navigation">
        <div class="sphinxsidebarwrapper">
          <div>
            <h4>Next topic</h4>
            <p class="topless"><a href="operator.html" title="next chapter">operator</a></p>
          </div>
          <div role="note" aria-label="source link"><h3>This Page</h3></div>
          <div id="searchbox" style="display: none" role="search">
            <h3 id="searchlabel">Quick search</h3>
          </div>
        </div>
      </div>
      <div class="clearer"></div>
    </div>
<div class="footer">
    &copy; <a href="../copyright.html">Copyright</a> 2001-2023, Python Software Foundation.
    <br />
    Last updated on Feb 08, 2023.
</div>
  </body>
</html>
"""

BLOG_PAGE = """<!doctype html>
<html lang="en-GB">
<head>
  <title>Ten tips for sourdough | The Crumb Blog</title>
  <meta name="description" content="How to   bake
    better bread.">
  <meta property="article:modified_time" content="2024-03-01T10:00:00+00:00">
  <meta name="robots" content="index, follow">
</head>
<body>
  <div class="cookie">We use cookies. <button>Accept</button></div>
  <header class="site-header">
    <a href="/" class="logo">The Crumb Blog</a>
    <nav><ul><li><a href="/recipes/">Recipes</a></li><li><a href="/about/">About us</a></li></ul></nav>
  </header>
  <main>
    <article>
      <header><h1>Ten tips for sourdough</h1><p class="byline">By Ann, 1 March 2024</p></header>
      <p>Sourdough rewards <em>patience</em>.</p>
      <h2>1. Feed your starter</h2>
      <p>Feed it twice a day.</p>
      <div class="related"><h3>Related posts</h3><a href="/rye/">Rye bread</a></div>
      <aside><p>Pull quote: bake every day.</p></aside>
      <h2>2. Use a scale</h2>
      <ol>
        <li>Flour: 500 g</li>
        <li>Water: 350 g</li>
      </ol>
      <footer>Tags: <a href="/tags/bread/">bread</a></footer>
    </article>
  </main>
  <aside><h2>Newsletter</h2><form><input name="email"><button>Subscribe</button></form></aside>
  <footer><p>&copy; 2024 The Crumb Blog</p><a href="/privacy/">Privacy</a></footer>
</body>
</html>
"""


def _html(body: str, base: str = "https://example.com/dir/page.html") -> ExtractedDocument:
    return extract_html(body, base)


# --- HTML: main content and boilerplate ----------------------------------------------------------


def test_sphinx_page_yields_the_article_without_sidebar_navigation_or_footer() -> None:
    doc = extract_html(SPHINX_PAGE, BASE)

    assert doc.title == "functools — Higher-order functions — Python 3.11.2 documentation"
    assert doc.headings == [
        Heading(1, "functools — Higher-order functions"),
        Heading(2, "partial Objects"),
    ]
    assert doc.text.startswith(
        "functools — Higher-order functions\n\n"
        "Source code: Lib/functools.py\n\n"
        "The functools module is for higher-order functions: functions that act on or return "
        "other functions.\n\n"
        "Caching helpers\nPartial objects\n\n"
        "@functools.cache(user_function)\n\n"
        "Simple lightweight unbounded function cache.\n\n"
        "@cache\ndef factorial(n):\n"
        "    return n * factorial(n-1) if n else 1\n\n"
        ">>> factorial(10)\n3628800\n\n"
        "partial Objects\n\n"
    )
    assert doc.text.endswith(
        "Partial objects are callable objects created by partial().1\n\n"
        "Footnotes\n\n[1]\n\nFootnotes are docutils asides and stay."
    )
    for boilerplate in (
        "Previous topic",
        "Next topic",
        "This Page",
        "Quick search",
        "Navigation",
        "Table of Contents",
        "Report a Bug",
        "Copyright",
        "Last updated",
        "¶",
        "Go",
    ):
        assert boilerplate not in doc.text, boilerplate
    assert doc.language == "en"
    assert doc.canonical_url == "https://docs.example.org/3/library/functools.html"
    assert doc.description is None
    assert not doc.robots_noindex
    assert not doc.robots_nofollow


def test_sphinx_links_cover_the_whole_page_resolved_deduplicated_and_without_fragments() -> None:
    doc = extract_html(SPHINX_PAGE, BASE)

    assert doc.links == [
        "https://www.python.org/",
        "https://docs.example.org/3/contents.html",
        "https://docs.example.org/3/library/itertools.html",
        "https://docs.example.org/3/bugs.html",
        "https://docs.example.org/3/genindex.html",
        "https://docs.example.org/3/library/operator.html",
        "https://github.com/python/cpython/tree/3.11/Lib/functools.py",
        "https://docs.example.org/3/library/functools-cache.html",
        "https://docs.example.org/3/library/functools-partial.html",
        "https://docs.example.org/3/copyright.html",
    ]


def test_blog_page_keeps_the_article_and_drops_header_nav_aside_footer_and_cookie_banner() -> None:
    doc = extract_html(BLOG_PAGE, "https://blog.example.com/posts/sourdough/")

    assert doc.title == "Ten tips for sourdough | The Crumb Blog"
    assert doc.text == (
        "Ten tips for sourdough\n\n"
        "By Ann, 1 March 2024\n\n"
        "Sourdough rewards patience.\n\n"
        "1. Feed your starter\n\n"
        "Feed it twice a day.\n\n"
        "Pull quote: bake every day.\n\n"
        "2. Use a scale\n\n"
        "Flour: 500 g\nWater: 350 g"
    )
    assert doc.headings == [
        Heading(1, "Ten tips for sourdough"),
        Heading(2, "1. Feed your starter"),
        Heading(2, "2. Use a scale"),
    ]
    assert doc.language == "en"
    assert doc.description == "How to bake better bread."
    assert doc.last_modified == "2024-03-01T10:00:00+00:00"
    assert not doc.robots_noindex
    assert doc.links == [
        "https://blog.example.com/",
        "https://blog.example.com/recipes/",
        "https://blog.example.com/about/",
        "https://blog.example.com/rye/",
        "https://blog.example.com/tags/bread/",
        "https://blog.example.com/privacy/",
    ]


def test_page_without_main_uses_the_body_minus_boilerplate() -> None:
    doc = _html(
        """<html><head><title>Plain</title></head><body>
        <div id="header"><a href="/">Home</a> Site name</div>
        <div class="breadcrumbs"><a href="/a/">A</a> &gt; B</div>
        <div role="navigation"><a href="/x/">X</a></div>
        <div class="content">
          <h1>Welcome</h1>
          <p>First paragraph.</p>
          <div class="sidebar">Sidebar text</div>
          <p>Second paragraph.</p>
          <div class="toc"><a href="#s">Section</a></div>
          <div class="toctree-wrapper"><ul><li>Kept entry</li></ul></div>
          <div class="skip">Skip to content</div>
        </div>
        <div id="footer">Footer text</div>
        <div class="sphinxsidebarwrapper">Wrapped sidebar</div>
        </body></html>"""
    )
    assert doc.text == "Welcome\n\nFirst paragraph.\n\nSecond paragraph.\n\nKept entry"
    assert doc.headings == [Heading(1, "Welcome")]
    assert doc.links == [
        "https://example.com/",
        "https://example.com/a/",
        "https://example.com/x/",
    ]


def test_role_main_and_first_main_element_win_over_article_order() -> None:
    doc = _html(
        "<body><p>outside</p><div role='main'><p>inside</p><article><p>nested</p></article>"
        "</div><main><p>second main</p></main></body>"
    )
    assert doc.text == "inside\n\nnested"


def test_first_article_is_used_when_there_is_no_main() -> None:
    doc = _html(
        "<body><p>teaser</p><article><h2>One</h2><p>first</p></article>"
        "<article><p>second</p></article></body>"
    )
    assert doc.text == "One\n\nfirst"
    assert doc.headings == [Heading(2, "One")]


def test_empty_main_falls_back_to_the_whole_body() -> None:
    doc = _html("<body><main id='app'></main><div><p>rendered elsewhere</p></div></body>")
    assert doc.text == "rendered elsewhere"


def test_dropped_elements_script_style_forms_hidden_and_headerlinks() -> None:
    doc = _html(
        """<body><main>
        <script>document.write("<p>script text</p>")</script>
        <style>p { color: red }</style><noscript><p>enable JS</p></noscript>
        <template><p>template</p></template><iframe src="x">frame</iframe>
        <p>kept <button>Click</button>text</p>
        <form><label>Email</label><input name="e"></form>
        <div hidden>hidden attr</div><div style="DISPLAY: none">display none</div>
        <h2>Title<a class="headerlink" href="#t">¶</a></h2>
        <select><option>opt</option></select><textarea>area</textarea>
        <svg><title>icon title</title><text>svg text</text></svg>
        <div role="complementary">complementary</div><div role="contentinfo">info</div>
        <div role="banner">banner</div><div class="navbar">navbar</div>
        </main></body>"""
    )
    assert doc.text == "kept text\n\nTitle"
    assert doc.headings == [Heading(2, "Title")]


def test_class_tokens_must_match_whole_words() -> None:
    doc = _html(
        "<body><div class='navigation-help'>a</div><div class='menuitem-text'>b</div>"
        "<div class='tocs'>c</div><div class='main header'>d</div><div class='x MENU'>e</div>"
        "<div id='nav'>f</div><div id='navigation-notes'>g</div></body>"
    )
    assert doc.text == "a\n\nb\n\nc\n\ng"


# --- HTML: text layout ---------------------------------------------------------------------------


def test_entities_are_decoded_in_text_titles_and_attributes() -> None:
    doc = _html(
        "<title>Fish &amp; Chips &#8212; &quot;Menu&quot;</title>"
        "<p>5 &lt; 6 &gt; 4 &amp;&amp; caf&eacute; &#x263A; a&nbsp;b &copy 2024 AT&T</p>"
        "<a href='/search?a=1&amp;b=2&copy=3'></a>"
    )
    assert doc.title == 'Fish & Chips — "Menu"'
    assert doc.text == "5 < 6 > 4 && café ☺ a b © 2024 AT&T"
    assert doc.links == ["https://example.com/search?a=1&b=2&copy=3"]


def test_nested_and_unclosed_list_items_each_get_their_own_line() -> None:
    doc = _html(
        "<p>Intro</p><ul><li>one<li>two<ul><li>two.a<li>two.b</ul><li>three "
        "<b>bold</b></ul><ol><li><p>para item</p></li></ol><p>After</p>"
    )
    assert doc.text == "Intro\n\none\ntwo\ntwo.a\ntwo.b\nthree bold\n\npara item\n\nAfter"


def test_pre_keeps_line_breaks_and_paragraph_whitespace_collapses() -> None:
    doc = _html(
        "<p>  lots   of\n\n  space\t here </p>"
        "<pre>\n  def f():\n      return 1  # &lt;one&gt;\n\n  f()\n</pre>"
        "<p>line<br>break<br/>and <i>more</i></p>"
    )
    assert doc.text == (
        "lots of space here\n\n"
        "  def f():\n      return 1  # <one>\n\n  f()\n\n"
        "line\nbreak\nand more"
    )


def test_headings_tables_and_definition_lists() -> None:
    doc = _html(
        "<main><h1>Top   <small>v2</small></h1><h3>Deep<br>er</h3>"
        "<table><tr><th>Name<th>Value<tr><td>a<td>1</table>"
        "<dl><dt>term<dd>meaning</dl><h6>Last</h6></main>"
    )
    assert doc.headings == [Heading(1, "Top v2"), Heading(3, "Deep er"), Heading(6, "Last")]
    assert doc.text == "Top v2\n\nDeep\ner\n\nName Value\na 1\n\nterm\n\nmeaning\n\nLast"


def test_title_falls_back_to_first_h1_and_ignores_svg_titles() -> None:
    doc = _html("<body><svg><title>icon</title></svg><h2>Sub</h2><h1> Main   heading </h1></body>")
    assert doc.title == "Main heading"
    assert _html("<p>no heading</p>").title == ""
    assert _html("<title>\n  Spaced\n  title  </title>").title == "Spaced title"


def test_malformed_html_is_tolerated() -> None:
    doc = _html(
        "<BODY><DIV CLASS=content><P>one<P>two <b>bold <i>both</b> italic</i></p></p></span>"
        "<div><span>in span<div>block</span> tail</div>"
        "<p>a < b and c > d</p><![if !IE]><p>conditional</p><![endif]>"
        "<!-- <p>commented out</p> --><!doctype weird><?php echo 1 ?>"
        "<script>var s = '</div><p>not text</p>';</script>"
        "</nosuchtag><p>last <a href='/unterminated'"
    )
    assert doc.text == (
        "one\n\ntwo bold both italic\n\nin span\n\nblock\n\ntail\n\n"
        "a < b and c > d\n\nconditional\n\nlast"
    )
    assert doc.links == []


def test_stray_end_tags_and_self_closing_elements() -> None:
    doc = _html("before</p>after<div/>x<br></br>y</li></ul><p/>z")
    assert doc.text == "before\n\nafter\n\nx\ny\n\nz"


def test_raw_text_elements_and_unterminated_comments() -> None:
    doc = _html(
        "<p>x</p><SCRIPT type='text/javascript'>if (a<b) { s = '<p>no</p>'; }</SCRIPT >"
        "<p>y</p><style>p::after { content: '</p>' }</STYLE>z"
        "<!-- never closed <p>hidden</p> tail"
    )
    assert doc.text == "x\n\ny\n\nz"


def test_pathological_markup_completes() -> None:
    for page in ('<a b="' * 50_000 + ">", "<a" * 100_000, "<p>" * 50_000, "&" * 100_000):
        assert isinstance(_html(page), ExtractedDocument)


def test_deeply_nested_markup_completes() -> None:
    depth = 20_000
    doc = _html("<div>" * depth + "deep text" + "</div>" * depth + "<p>after</p>")
    assert doc.text == "deep text\n\nafter"


def test_two_megabyte_page_is_extracted_completely() -> None:
    paragraph = "<p>" + "word " * 19 + "end</p>\n"
    count = 2_000_000 // len(paragraph)
    page = "<html><body><nav>menu</nav><main>" + paragraph * count + "</main></body></html>"
    assert len(page) > 1_900_000

    doc = extract_html(page.encode(), "https://example.com/")

    words = len("word " * 19 + "end")
    assert len(doc.text) == count * words + (count - 1) * 2
    assert doc.text.count("\n\n") == count - 1


# --- HTML: metadata and links --------------------------------------------------------------------


def test_canonical_and_links_resolve_against_base_href() -> None:
    doc = _html(
        """<head><base href="/static/v2/"><link rel="canonical" href="../canon.html#top"></head>
        <body><a href="a.html">a</a><a href="https://other.org/x">x</a></body>"""
    )
    assert doc.canonical_url == "https://example.com/static/canon.html"
    assert doc.links == ["https://example.com/static/v2/a.html", "https://other.org/x"]


def test_canonical_resolves_against_base_url_and_must_be_http() -> None:
    assert _html('<link rel="canonical" href="/c">').canonical_url == "https://example.com/c"
    assert _html('<link rel="Canonical Alternate" href="c2">').canonical_url == (
        "https://example.com/dir/c2"
    )
    assert _html('<link rel="canonical" href="file:///tmp/c">').canonical_url is None
    assert _html('<link rel="alternate" href="/c">').canonical_url is None


def test_link_filtering_nofollow_schemes_fragments_and_duplicates() -> None:
    doc = _html(
        """<nav><a href="/nav/">nav</a></nav>
        <a href="x.html#part">x</a><a href="x.html">dup</a><a href=" x.html#other ">dup2</a>
        <a href="javascript:void(0)">js</a><a href="mailto:a@example.com">mail</a>
        <a href="tel:+100">tel</a><a href="data:text/html,hi">data</a><a href="#top">top</a>
        <a href="">empty</a><a>no href</a><a href="ftp://example.com/f">ftp</a>
        <a rel="external NoFollow" href="/nofollow">nf</a><a rel="follow" href="/ok">ok</a>
        <a href="//cdn.example.net/lib">protocol relative</a><a href="http://[broken">bad</a>
        <a href="HTTPS://Example.com/Upper">upper</a><a href="/multi\n\tline">ws</a>
        <a href="/with space">space</a>"""
    )
    assert doc.links == [
        "https://example.com/nav/",
        "https://example.com/dir/x.html",
        "https://example.com/ok",
        "https://cdn.example.net/lib",
        "https://Example.com/Upper",
        "https://example.com/multiline",
        "https://example.com/with%20space",
    ]


def test_language_from_html_lang_or_content_language_meta() -> None:
    assert _html('<html lang="en-GB"><p>x</p>').language == "en"
    assert _html('<html lang="PT_br"><p>x</p>').language == "pt"
    assert _html('<html xml:lang="fr"><p>x</p>').language == "fr"
    meta = '<html><meta http-equiv="Content-Language" content="de-DE, en"><p>x</p>'
    assert _html(meta).language == "de"
    assert _html('<html lang=""><meta http-equiv="content-language" content="nl">').language == "nl"
    assert _html("<p>x</p>").language is None


def test_meta_description_last_modified_and_robots() -> None:
    doc = _html(
        '<meta name="Description" content="  A   page ">'
        '<meta http-equiv="Last-Modified" content="Tue, 15 Nov 1994 12:45:26 GMT">'
        '<meta name="ROBOTS" content="NOINDEX,nofollow">'
    )
    assert doc.description == "A page"
    assert doc.last_modified == "Tue, 15 Nov 1994 12:45:26 GMT"
    assert doc.robots_noindex
    assert doc.robots_nofollow

    only_noindex = _html('<meta name="robots" content="noindex">')
    assert only_noindex.robots_noindex
    assert not only_noindex.robots_nofollow
    none = _html('<meta name="robots" content="none">')
    assert none.robots_noindex
    assert none.robots_nofollow
    assert _html("<p>x</p>").last_modified is None


# --- charsets ------------------------------------------------------------------------------------


def test_decode_bytes_prefers_charset_then_bom_then_meta_then_utf8() -> None:
    text = "<p>café “quoted”</p>"
    assert decode_bytes(text.encode("cp1252"), "windows-1252") == text
    assert decode_bytes(text.encode("utf-16"), None) == text
    assert decode_bytes(b"\xef\xbb\xbf" + text.encode(), None) == text
    assert decode_bytes(text.encode(), None) == text
    # The given charset wins over the one the page declares.
    declared = '<meta charset="iso-8859-1">' + text
    assert decode_bytes(declared.encode(), "utf-8") == declared


def test_decode_bytes_sniffs_meta_charset_in_the_first_2kb() -> None:
    page = '<html><head><meta charset="windows-1252"><title>Café</title>'
    assert decode_bytes(page.encode("cp1252"), None) == page
    http_equiv = '<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">“é”'
    # Labelled latin-1 is decoded as windows-1252, as browsers do.
    assert decode_bytes(http_equiv.encode("cp1252"), None) == http_equiv
    xml = '<?xml version="1.0" encoding="iso-8859-15"?><p>€</p>'
    assert decode_bytes(xml.encode("iso-8859-15"), None) == xml
    late = " " * 2100 + '<meta charset="windows-1252"><p>é</p>'
    assert decode_bytes(late.encode("cp1252"), None).endswith("<p>\ufffd</p>")


def test_decode_bytes_falls_back_to_utf8_with_replacement() -> None:
    assert decode_bytes(b"caf\xe9 ok", None) == "caf\ufffd ok"
    assert decode_bytes("café".encode(), "no-such-charset") == "café"
    assert decode_bytes("café".encode(), "base64") == "café"
    assert decode_bytes('<meta charset="utf-16"><p>é</p>'.encode(), None).endswith("é</p>")


def test_extract_html_decodes_bytes_with_the_declared_charset() -> None:
    page = '<html lang="fr"><head><meta charset="windows-1252"><title>Café</title></head>'
    doc = extract_html((page + "<body><p>Naïve “quote”</p></body>").encode("cp1252"), BASE)
    assert doc.title == "Café"
    assert doc.text == "Naïve “quote”"
    assert doc.language == "fr"


# --- plain text ----------------------------------------------------------------------------------


def test_plain_text_title_is_the_first_non_empty_line() -> None:
    data = b"\r\n  \r\n  Release notes  \r\nline two   \r\n\r\n\r\n\r\nnext para\r\n"
    doc = extract_plain_text(data)
    assert doc.title == "Release notes"
    assert doc.text == "  Release notes\nline two\n\nnext para"
    assert doc.headings == []
    assert doc.links == []


def test_plain_text_charset_bom_and_long_titles() -> None:
    assert extract_plain_text("Größe".encode("latin-1"), charset="iso-8859-1").title == "Größe"
    assert extract_plain_text("Hallo".encode("utf-16")).text == "Hallo"
    assert extract_plain_text(b"x" * 500).title == "x" * 200
    assert extract_plain_text(b"").title == ""


# --- Markdown ------------------------------------------------------------------------------------

MARKDOWN = b"""# Getting *started* with `trellis`

Intro with **bold**, *em*, _under_ and snake_case_name, plus `code_with_*stars*`.
See [the docs](https://docs.example.com/start#install "Docs") or [local](guide.md).
An image ![diagram](img/d.png) and <https://example.org/auto>.

## Install ##

- first step
* second [ref link][ref]
1. numbered
> quoted \\*not emphasis\\*

```python
# a comment, not a heading
x = a * b * c
```

Setext heading
--------------

| name | value |
|------|-------|
| a    | 1     |

[ref]: https://example.net/ref
"""


def test_markdown_title_headings_and_text_without_markup() -> None:
    doc = extract_markdown(MARKDOWN)
    assert doc.title == "Getting started with trellis"
    assert doc.headings == [
        Heading(1, "Getting started with trellis"),
        Heading(2, "Install"),
        Heading(2, "Setext heading"),
    ]
    assert doc.text == (
        "Getting started with trellis\n\n"
        "Intro with bold, em, under and snake_case_name, plus code_with_*stars*.\n"
        "See the docs or local.\n"
        "An image diagram and https://example.org/auto.\n\n"
        "Install\n\n"
        "first step\nsecond ref link\n1. numbered\nquoted *not emphasis*\n\n"
        "# a comment, not a heading\nx = a * b * c\n\n"
        "Setext heading\n\n"
        "name | value\na | 1"
    )


def test_markdown_links_are_absolute_http_targets_only() -> None:
    assert extract_markdown(MARKDOWN).links == [
        "https://docs.example.com/start",
        "https://example.org/auto",
        "https://example.net/ref",
    ]


def test_markdown_title_falls_back_to_front_matter_then_first_line() -> None:
    front = b'---\ntitle: "From front matter"\nlayout: post\n---\nBody text\n## Sub\n'
    doc = extract_markdown(front)
    assert doc.title == "From front matter"
    assert doc.text == "Body text\n\nSub"
    assert extract_markdown(b"\n\nJust **a** line\nmore").title == "Just a line"


def test_markdown_pathological_lines_complete() -> None:
    for data in (b"*a " * 20_000, b"`a " * 20_000, b"[a](" * 20_000, b"_a " * 20_000):
        assert extract_markdown(data).text


# --- JSON ----------------------------------------------------------------------------------------


def test_json_leaves_become_key_path_lines() -> None:
    data = json.dumps(
        {
            "title": "Widget",
            "price": 9.5,
            "stock": 3,
            "active": True,
            "note": None,
            "tags": ["a", "b  c"],
            "dims": {"w": 10, "text": "multi\nline"},
            "empty": {},
        }
    ).encode()
    doc = extract_json(data)
    assert doc.title == ""
    assert doc.text == (
        "title: Widget\nprice: 9.5\nstock: 3\ntags[0]: a\ntags[1]: b c\n"
        "dims.w: 10\ndims.text: multi line"
    )
    assert extract_json(b'[{"a": 1}, "x"]').text == "[0].a: 1\n[1]: x"
    assert extract_json(b'"scalar"').text == "scalar"


def test_json_handles_bom_and_deep_nesting() -> None:
    assert extract_json(b'\xef\xbb\xbf{"a": "b"}').text == "a: b"
    deep = b'{"k": ' * 500 + b'"leaf"' + b"}" * 500
    assert extract_json(deep).text.endswith(".k: leaf")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": ', "invalid JSON at line 1 column 7"),
        (b"{'a': 1}", "invalid JSON at line 1 column 2"),
        (b"", "invalid JSON at line 1 column 1"),
        (b"\xff\xfe\x00", "invalid JSON"),
        (b"[" * 200_000, "invalid JSON"),
    ],
)
def test_invalid_json_raises_value_error_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        extract_json(data)


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_rows_become_header_value_lines() -> None:
    data = b'name,age,city\r\nalice,30,\r\n"bob, jr",40,"New\nYork",extra\r\n\r\n,,\r\n'
    doc = extract_csv(data)
    assert doc.title == ""
    assert doc.text == (
        "name: alice; age: 30\nname: bob, jr; age: 40; city: New York; column 4: extra"
    )


def test_csv_detects_semicolon_and_tab_delimiters() -> None:
    assert extract_csv(b"a;b\n1;2,5\n").text == "a: 1; b: 2,5"
    assert extract_csv(b"a\tb\n1\t2\n").text == "a: 1; b: 2"
    assert extract_csv(b"only\nx\n").text == "only: x"
    assert extract_csv(b"").text == ""


def test_csv_is_capped_at_max_rows() -> None:
    data = b"n\n" + b"".join(b"%d\n" % i for i in range(MAX_CSV_ROWS + 50))
    lines = extract_csv(data).text.split("\n")
    assert len(lines) == MAX_CSV_ROWS
    assert lines[-1] == f"n: {MAX_CSV_ROWS - 1}"


def test_broken_csv_raises_value_error() -> None:
    with pytest.raises(ValueError, match="invalid CSV at line 2"):
        extract_csv(b'a\n"' + b"x" * 200_000 + b'"\n')


# --- PDF -----------------------------------------------------------------------------------------


def test_pdf_text_title_and_outline() -> None:
    data = make_pdf(
        ["Capybaras (the largest rodents)\nlive near water.", "Page two is about wombats."],
        title="  Rodent   facts ",
        outline=[(1, "Capybaras"), (2, "Habitat"), (1, "Wombats")],
    )
    doc = extract_for("PDF", data, base_url="https://example.org/files/report.pdf")
    assert "PDF" in SUPPORTED
    assert doc.title == "Rodent facts"
    assert doc.text == (
        "Capybaras (the largest rodents)\nlive near water.\n\nPage two is about wombats."
    )
    assert doc.headings == [Heading(1, "Capybaras"), Heading(2, "Habitat"), Heading(1, "Wombats")]
    assert doc.links == [] and doc.language is None


def test_pdf_without_a_title_is_named_after_its_file() -> None:
    data = make_pdf(["Some text."])
    assert extract_for("PDF", data, base_url="https://x.org/a/Annual%20Report.v2.pdf").title == (
        "Annual Report.v2"
    )
    assert extract_for("PDF", data, base_url="https://x.org/docs/").title == "docs"
    assert extract_for("PDF", data).title == ""


def test_pdf_with_a_user_password_is_refused_clearly() -> None:
    data = make_pdf(["Secret plans."], user_password="hunter2")
    with pytest.raises(ValidationFailed, match="encrypted with a password"):
        extract_for("PDF", data)


def test_pdf_encrypted_for_permissions_only_is_read() -> None:
    # Every reader opens these with the empty user password: they are not secret.
    data = make_pdf(["Printable but not editable."], owner_password="owner")
    assert extract_for("PDF", data).text == "Printable but not editable."


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html>not a pdf</html>",
        b"%PDF-1.7\n",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R",
        b"%PDF-1.7\n" + b"[" * 50_000,
        make_pdf(["Cut short."])[:300],
    ],
    ids=["empty", "html", "header-only", "unterminated", "deep-nesting", "truncated"],
)
def test_malformed_pdfs_fail_fast_as_validation_errors(data: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(ValidationFailed, match="the PDF document is unreadable"):
        extract_for("PDF", data)
    assert time.monotonic() - started < 5


def test_pdf_pages_and_characters_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import documents.pdf

    data = make_pdf([f"Page {i} text." for i in range(5)])
    monkeypatch.setattr(documents.pdf, "MAX_PDF_PAGES", 2)
    assert extract_for("PDF", data).text == "Page 0 text.\n\nPage 1 text."
    monkeypatch.setattr(documents.pdf, "MAX_PDF_PAGES", 2_000)
    monkeypatch.setattr(documents.pdf, "MAX_PDF_CHARACTERS", 20)
    text = extract_for("PDF", data).text
    assert text.startswith("Page 0 text.\n\nPage") and len(text) <= 22


def test_pdf_extraction_stops_at_its_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    import documents.pdf

    monkeypatch.setattr(documents.pdf, "PDF_TIME_BUDGET_S", -1.0)
    doc = extract_for("PDF", make_pdf(["Never read."], title="Kept"))
    assert doc.text == "" and doc.title == "Kept"
