// Typesets the maths of the site with the KaTeX vendored beside this file (no CDN).
// pymdownx.arithmatex (generic mode) leaves inline maths as <span class="arithmatex">\(...\)</span>
// and display maths as <div class="arithmatex">\[...\]</div>; each is replaced by KaTeX's HTML.
(function () {
  "use strict";

  function strip(tex, display) {
    tex = tex.trim();
    var open = display ? "\\[" : "\\(";
    var close = display ? "\\]" : "\\)";
    if (tex.startsWith(open) && tex.endsWith(close)) {
      tex = tex.slice(open.length, tex.length - close.length);
    }
    return tex;
  }

  function typeset(root) {
    root.querySelectorAll(".arithmatex").forEach(function (element) {
      if (element.classList.contains("katex-done")) {
        return;
      }
      var display = element.tagName === "DIV";
      katex.render(strip(element.textContent, display), element, {
        displayMode: display,
        throwOnError: false,
      });
      element.classList.add("katex-done");
    });
  }

  if (typeof document$ !== "undefined") {
    // mkdocs-material: fires on the first load and after every instant navigation.
    document$.subscribe(function () {
      typeset(document.body);
    });
  } else {
    document.addEventListener("DOMContentLoaded", function () {
      typeset(document.body);
    });
  }
})();
