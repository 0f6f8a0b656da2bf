// Markdown-lite for playbooks and plans: headings, paragraphs, lists, fenced code, **bold** and `code`.
// Built as DOM nodes (text only), never as HTML, so nothing in the text can become markup.

import {h} from "./dom.js";

const INLINE = /(\*\*[^*]+\*\*|`[^`]+`)/g;

function inline(text) {
  return text.split(INLINE).filter(Boolean).map((part) => {
    if (part.startsWith("**") && part.endsWith("**") && part.length > 4) return h("strong", {}, part.slice(2, -2));
    if (part.startsWith("`") && part.endsWith("`") && part.length > 2) return h("code", {}, part.slice(1, -1));
    return part;
  });
}

export function markdown(text) {
  const root = h("div", {class: "markdown"});
  const lines = String(text || "").split("\n");
  let para = [];
  let list = null;
  const flush = () => {
    if (para.length) root.append(h("p", {}, inline(para.join(" "))));
    para = [];
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const item = line.match(/^\s*(?:[-*]|\d+[.)])\s+(.*)$/);
    if (line.startsWith("```")) {
      flush();
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      root.append(h("pre", {}, code.join("\n")));
    } else if (heading) {
      flush();
      root.append(h(`h${Math.min(heading[1].length + 2, 6)}`, {}, inline(heading[2])));
    } else if (item) {
      if (para.length) flush();
      if (!list) {
        list = h(/^\s*\d/.test(line) ? "ol" : "ul", {});
        root.append(list);
      }
      list.append(h("li", {}, inline(item[1])));
    } else if (!line.trim()) {
      flush();
    } else if (list && /^\s+/.test(line)) {
      list.lastChild.append(" ", ...inline(line.trim()));
    } else {
      list = null;
      para.push(line.trim());
    }
  }
  flush();
  return root;
}
