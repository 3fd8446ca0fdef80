// Search: query an index the way Kendra's search console does. Answers with their highlighted
// span, FAQ answers, documents with excerpts and confidence, facets as filters, pages, query
// suggestions while typing, click and relevance feedback, and "search as" a user (ACLs).
//
// Routes: #/search, #/search/<indexId>, #/search/<indexId>/<query text>.

import { api, errorBox, field, formatNumber, formatTime, h, onLeave, show } from "../lib.js";

const SUGGEST_DELAY_MS = 200;
// Reserved attributes that make useful facets; the index's facetable attributes come on top.
const RESERVED_FACETS = ["_data_source_id", "_category", "_file_type", "_language_code", "_authors"];
const FACET_LABELS = {
  _data_source_id: "Data source",
  _category: "Category",
  _file_type: "File type",
  _language_code: "Language",
  _authors: "Authors",
};
const TYPE_LABELS = { ANSWER: "Answer", QUESTION_ANSWER: "FAQ", DOCUMENT: "Document" };
const RANKING_MODES = ["HYBRID_NORMALIZED", "HYBRID_RRF", "KEYWORD", "SEMANTIC"];

export async function render(root, params) {
  const [indexParam, queryParam] = params;
  const { Indexes: indexes = [] } = await api("GET", "/v1/indexes");
  root.append(h("h1", {}, "Search"));
  if (!indexes.length) {
    root.append(
      h("p", { class: "empty", id: "search-no-index" }, "No indexes yet. ",
        h("a", { href: "#/sources" }, "Create an index"), " on the Data sources page, add documents, then search here."),
    );
    return;
  }
  const index = indexes.find((ix) => ix.Id === indexParam) || indexes[0];
  const page = new SearchPage(root, index, indexes);
  await page.start(queryParam);
}

class SearchPage {
  constructor(root, index, indexes) {
    this.root = root;
    this.index = index;
    this.indexes = indexes;
    this.filters = new Map(); // key -> {type, values: [raw value objects]}
    this.pageNumber = 1;
    this.last = null; // {text, response}
    this.facetKeys = [...RESERVED_FACETS];
    this.sourceNames = new Map();
    this.suggestTicket = 0;
    this.queryTicket = 0;
  }

  async start(initialQuery) {
    this.build();
    const [described] = await Promise.all([
      api("GET", `/v1/indexes/${encodeURIComponent(this.index.Id)}`).catch((err) => err),
      this.loadSourceNames(),
    ]);
    this.describeIndex(described);
    if (initialQuery) {
      this.input.value = initialQuery;
      await this.search({ resetPage: true });
    }
  }

  // -- layout --------------------------------------------------------------------------------

  build() {
    const id = this.index.Id;
    this.indexSelect = h("select", { id: "search-index", "aria-label": "Index" },
      this.indexes.map((ix) => h("option", { value: ix.Id, selected: ix.Id === id }, `${ix.Name} (${ix.Status})`)));
    this.indexSelect.addEventListener("change", () => {
      location.hash = `#/search/${encodeURIComponent(this.indexSelect.value)}`;
    });
    this.stats = h("p", { class: "hint", id: "search-index-stats" }, "…");

    this.input = h("input", {
      type: "search", id: "search-query", name: "q", autocomplete: "off", placeholder: "Ask a question or type keywords",
      role: "combobox", "aria-autocomplete": "list", "aria-expanded": "false", "aria-controls": "search-suggestions",
      "aria-label": "Query", maxlength: 1000,
    });
    this.suggestions = h("ul", { id: "search-suggestions", role: "listbox", class: "suggestions", hidden: true, "aria-label": "Query suggestions" });
    this.input.addEventListener("input", () => this.scheduleSuggestions());
    this.input.addEventListener("keydown", (event) => this.suggestionKeys(event));
    this.input.addEventListener("blur", () => setTimeout(() => this.hideSuggestions(), 150));
    this.submit = h("button", { type: "submit", id: "search-submit" }, "Search");

    this.typeSelect = h("select", { id: "search-type" },
      h("option", { value: "" }, "All results"),
      h("option", { value: "ANSWER" }, "Answers"),
      h("option", { value: "QUESTION_ANSWER" }, "FAQ answers"),
      h("option", { value: "DOCUMENT" }, "Documents"));
    this.rankingSelect = h("select", { id: "search-ranking" },
      h("option", { value: "" }, "Index default"),
      RANKING_MODES.map((m) => h("option", { value: m }, m)));
    this.pageSizeSelect = h("select", { id: "search-page-size" },
      [5, 10, 20, 50].map((n) => h("option", { value: n, selected: n === 10 }, String(n))));
    for (const select of [this.typeSelect, this.rankingSelect, this.pageSizeSelect]) {
      select.addEventListener("change", () => this.requery({ resetPage: true }));
    }

    this.userId = h("input", { type: "text", id: "search-user-id", placeholder: "e.g. alice", maxlength: 1024, autocomplete: "off" });
    this.groups = h("input", { type: "text", id: "search-groups", placeholder: "e.g. support, staff", autocomplete: "off" });
    this.searchAs = h("p", { class: "hint", id: "search-as" });
    for (const input of [this.userId, this.groups]) {
      input.addEventListener("change", () => {
        this.describeUser();
        this.requery({ resetPage: true });
      });
    }
    this.describeUser();

    const form = h("form", { id: "search-form", class: "search-form", role: "search" },
      h("div", { class: "search-box" },
        h("div", { class: "suggest" }, this.input, this.suggestions),
        this.submit),
      h("div", { class: "row search-options" },
        field("Result types", this.typeSelect),
        field("Ranking", this.rankingSelect),
        field("Results per page", this.pageSizeSelect)),
      h("details", { class: "search-user", id: "search-user" },
        h("summary", {}, "Search as a user (access control)"),
        h("div", { class: "row" },
          field("User id", this.userId),
          field("Groups (comma-separated)", this.groups)),
        h("p", { class: "hint" }, "With a user context the index returns only the documents whose access control list lets that user or one of the groups read them.")),
      this.searchAs);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.hideSuggestions();
      this.search({ resetPage: true });
    });

    this.chips = h("div", { id: "search-filters", class: "chips", "aria-label": "Active filters" });
    this.facets = h("aside", { id: "search-facets", class: "search-facets", "aria-label": "Facets" });
    this.summary = h("p", { id: "search-summary", class: "hint", "aria-live": "polite" });
    this.results = h("div", { id: "search-results" }, h("p", { class: "empty" }, "Type a query to search this index."));
    this.pager = h("nav", { id: "search-pager", class: "pager", "aria-label": "Result pages" });

    show(this.root,
      h("h1", {}, "Search"),
      h("div", { class: "row" }, field("Index", this.indexSelect)),
      this.stats,
      form,
      this.chips,
      h("div", { class: "search-layout" },
        this.facets,
        h("div", { class: "search-main" }, this.summary, this.results, this.pager)));
  }

  describeIndex(described) {
    if (described instanceof Error) {
      show(this.stats, errorBox(described));
      return;
    }
    const stats = described.IndexStatistics || {};
    const docs = stats.TextDocumentStatistics?.IndexedTextDocumentsCount ?? 0;
    const faqs = stats.FaqStatistics?.IndexedQuestionAnswersCount ?? 0;
    show(this.stats,
      `${formatNumber(docs)} documents · ${formatNumber(faqs)} FAQ answers · ranking ${described.RankingMode || "—"}`
      + ` · user context policy ${described.UserContextPolicy || "—"}`
      + (described.Status !== "ACTIVE" ? ` · status ${described.Status}` : ""));
    this.stats.dataset.documents = String(docs);
    for (const config of described.DocumentMetadataConfigurations || []) {
      if (config.Search?.Facetable && !this.facetKeys.includes(config.Name)) this.facetKeys.push(config.Name);
    }
    this.policy = described.UserContextPolicy;
    this.describeUser();
  }

  async loadSourceNames() {
    try {
      const { SummaryItems = [] } = await api("GET", `/v1/data-sources?index_id=${encodeURIComponent(this.index.Id)}`);
      for (const s of SummaryItems) this.sourceNames.set(s.Id, s.Name);
    } catch {
      // Without crawler access the facet shows source ids: nothing to report.
    }
  }

  userContext() {
    const userId = this.userId.value.trim();
    const groups = this.groups.value.split(",").map((g) => g.trim()).filter(Boolean);
    if (!userId && !groups.length) return null;
    const context = {};
    if (userId) context.UserId = userId;
    if (groups.length) context.Groups = [...new Set(groups)];
    return context;
  }

  describeUser() {
    const context = this.userContext();
    if (!context) {
      show(this.searchAs, this.policy === "USER_TOKEN"
        ? "Searching without a user: only documents without an access control list are visible."
        : "Searching without a user context: every document is visible.");
    } else {
      show(this.searchAs, "Searching as ",
        h("b", {}, context.UserId || "(no user id)"),
        context.Groups ? ` in groups ${context.Groups.join(", ")}` : "",
        ": only the documents they may read are visible.");
    }
  }

  // -- querying ------------------------------------------------------------------------------

  requery(options) {
    if (this.input.value.trim()) this.search(options);
  }

  request(text) {
    const body = {
      QueryText: text,
      PageNumber: this.pageNumber,
      PageSize: Number(this.pageSizeSelect.value),
    };
    if (this.facetKeys.length) body.Facets = this.facetKeys.map((key) => ({ DocumentAttributeKey: key, MaxResults: 10 }));
    const filter = this.attributeFilter();
    if (filter) body.AttributeFilter = filter;
    const user = this.userContext();
    if (user) body.UserContext = user;
    if (this.typeSelect.value) body.QueryResultTypeFilter = this.typeSelect.value;
    if (this.rankingSelect.value) body.RankingMode = this.rankingSelect.value;
    return body;
  }

  async search({ resetPage = false } = {}) {
    const text = this.input.value.trim();
    if (!text) {
      show(this.results, errorBox("Type something to search for."));
      return;
    }
    if (text.length > 1000) {
      show(this.results, errorBox("A query is at most 1000 characters."));
      return;
    }
    if (resetPage) this.pageNumber = 1;
    const ticket = ++this.queryTicket;
    this.submit.disabled = true;
    this.results.setAttribute("aria-busy", "true");
    try {
      const response = await this.query(text);
      if (ticket !== this.queryTicket) return;
      this.last = { text, response };
      // Tests wait for a new answer by this (results of a new query replace the old ones).
      this.results.dataset.queryId = response.QueryId || "";
      history.replaceState(null, "", `#/search/${encodeURIComponent(this.index.Id)}/${encodeURIComponent(text)}`);
      this.showResults(text, response);
    } catch (err) {
      if (ticket !== this.queryTicket) return;
      show(this.summary);
      show(this.pager);
      show(this.results, errorBox(err));
    } finally {
      if (ticket === this.queryTicket) {
        this.submit.disabled = false;
        this.results.removeAttribute("aria-busy");
      }
    }
  }

  // A facet the index has no attribute for yet is refused by name: drop it and ask again.
  async query(text) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await api("POST", `/v1/indexes/${encodeURIComponent(this.index.Id)}/query`, this.request(text));
      } catch (err) {
        const unknown = /^Facets: unknown attribute '([^']+)'/.exec(err.message || "");
        if (!unknown || attempt > 25 || !this.facetKeys.includes(unknown[1])) throw err;
        this.facetKeys = this.facetKeys.filter((k) => k !== unknown[1]);
      }
    }
  }

  showResults(text, response) {
    const items = response.ResultItems || [];
    const total = response.TotalNumberOfResults ?? 0;
    const size = Number(this.pageSizeSelect.value);
    const documents = items.filter((i) => i.Type === "DOCUMENT");
    const first = (this.pageNumber - 1) * size + 1;
    this.summary.dataset.total = String(total);
    if (documents.length) {
      show(this.summary, `Documents ${formatNumber(first)}–${formatNumber(first + documents.length - 1)} of ${formatNumber(total)} for “${text}”`);
    } else {
      show(this.summary, `${formatNumber(items.length)} result${items.length === 1 ? "" : "s"} for “${text}”`);
    }
    if (!items.length) {
      show(this.results, h("p", { class: "empty", id: "search-empty" }, `No results for “${text}”.`,
        this.filters.size ? " Remove a filter to widen the search." : ""));
    } else {
      let answerShown = false;
      show(this.results, h("ol", { class: "results", id: "search-result-list" },
        items.map((item, i) => {
          const li = this.resultItem(item, i, response.QueryId, answerShown);
          if (item.Type === "ANSWER") answerShown = true;
          return li;
        })));
    }
    this.showFacets(response.FacetResults || []);
    this.showChips();
    this.showPager(total, size);
  }

  resultItem(item, i, queryId, answerShown) {
    const type = item.Type;
    const li = h("li", {
      class: `result ${type === "ANSWER" ? "answer" : type === "QUESTION_ANSWER" ? "faq" : "document"}`,
      id: `search-result-${i}`,
      dataset: { type, resultId: item.Id, documentId: item.DocumentId || "" },
    });
    const confidence = item.ScoreAttributes?.ScoreConfidence;
    const head = h("div", { class: "result-head" },
      h("span", { class: "result-type" }, TYPE_LABELS[type] || type),
      confidence ? h("span", { class: `badge confidence conf-${confidence.toLowerCase()}`, title: "Score confidence" }, confidence.replace("_", " ")) : null);
    const attr = (key) => (item.AdditionalAttributes || []).find((a) => a.Key === key)?.Value?.TextWithHighlightsValue;
    if (type === "ANSWER") {
      const answer = attr("AnswerText") || item.DocumentExcerpt || { Text: "", Highlights: [] };
      put(li, head,
        h("p", { class: "answer-text", id: answerShown ? null : "search-answer" }, highlighted(answer)),
        h("p", { class: "answer-source" }, "From ", this.titleLink(item, li, queryId)),
        item.DocumentURI ? h("div", { class: "uri" }, item.DocumentURI) : null);
    } else if (type === "QUESTION_ANSWER") {
      const question = attr("QuestionText") || { Text: "", Highlights: [] };
      const answer = attr("AnswerText") || item.DocumentExcerpt || { Text: "", Highlights: [] };
      put(li, head,
        h("p", { class: "faq-question" }, h("b", {}, "Q: "), highlighted(question)),
        h("p", { class: "faq-answer" }, h("b", {}, "A: "), highlighted(answer)),
        item.DocumentURI ? h("div", { class: "uri" }, this.uriLink(item, li, queryId)) : null);
    } else {
      put(li, head,
        h("h3", { class: "result-title" }, this.titleLink(item, li, queryId)),
        item.DocumentURI ? h("div", { class: "uri" }, item.DocumentURI) : null,
        h("p", { class: "excerpt" }, highlighted(item.DocumentExcerpt || { Text: "" })),
        this.attributeLine(item));
    }
    put(li, this.votes(item, li, queryId));
    return li;
  }

  titleLink(item, li, queryId) {
    const title = item.DocumentTitle && item.DocumentTitle.Text
      ? highlighted(item.DocumentTitle)
      : [item.DocumentId || item.DocumentURI || "(untitled)"];
    const href = safeHref(item.DocumentURI);
    if (!href) return h("span", { class: "result-link" }, title);
    return h("a", {
      class: "result-link", href, target: "_blank", rel: "noopener noreferrer",
      onclick: () => this.click(item, li, queryId),
    }, title);
  }

  uriLink(item, li, queryId) {
    const href = safeHref(item.DocumentURI);
    if (!href) return item.DocumentURI;
    return h("a", { class: "result-link", href, target: "_blank", rel: "noopener noreferrer", onclick: () => this.click(item, li, queryId) }, item.DocumentURI);
  }

  attributeLine(item) {
    const shown = (item.DocumentAttributes || []).filter((a) => !a.Key.startsWith("_"));
    const parts = [];
    const category = (item.DocumentAttributes || []).find((a) => a.Key === "_category");
    if (category) parts.push(`category: ${valueText(category.Value)}`);
    for (const a of shown) parts.push(`${a.Key}: ${valueText(a.Value)}`);
    const updated = (item.DocumentAttributes || []).find((a) => a.Key === "_last_updated_at");
    if (updated?.Value?.DateValue) parts.push(`updated ${formatTime(updated.Value.DateValue)}`);
    return parts.length ? h("p", { class: "attributes hint" }, parts.join(" · ")) : null;
  }

  votes(item, li, queryId) {
    const wrap = h("div", { class: "votes" });
    const vote = (value, label, cls) => {
      const button = h("button", { type: "button", class: `link ${cls}`, "aria-pressed": "false" }, label);
      button.addEventListener("click", async () => {
        button.disabled = true;
        wrap.querySelector(":scope > .error")?.remove();
        try {
          await api("POST", `/v1/indexes/${encodeURIComponent(this.index.Id)}/feedback`, {
            QueryId: queryId,
            RelevanceFeedbackItems: [{ ResultId: item.Id, RelevanceValue: value }],
          });
          for (const b of wrap.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === button));
          li.dataset.vote = value;
        } catch (err) {
          wrap.append(errorBox(err));
        } finally {
          button.disabled = false;
        }
      });
      return button;
    };
    wrap.append(h("span", { class: "hint" }, "Helpful? "),
      vote("RELEVANT", "Yes", "vote-relevant"), " ",
      vote("NOT_RELEVANT", "No", "vote-not-relevant"));
    return wrap;
  }

  // Kendra's click feedback: sent while the browser opens the document in a new tab.
  click(item, li, queryId) {
    api("POST", `/v1/indexes/${encodeURIComponent(this.index.Id)}/feedback`, {
      QueryId: queryId,
      ClickFeedbackItems: [{ ResultId: item.Id, ClickTime: new Date().toISOString() }],
    }).then(
      () => { li.dataset.feedback = "clicked"; },
      (err) => { li.dataset.feedback = "failed"; li.title = `Click feedback not recorded: ${err.message}`; },
    );
  }

  // -- facets and filters --------------------------------------------------------------------

  facetLabel(key) {
    return FACET_LABELS[key] || key;
  }

  facetValueText(key, value) {
    if (key === "_data_source_id" && value.StringValue) return this.sourceNames.get(value.StringValue) || value.StringValue;
    return valueText(value);
  }

  showFacets(facetResults) {
    const groups = facetResults.filter((f) => (f.DocumentAttributeValueCountPairs || []).length);
    if (!groups.length) {
      show(this.facets, this.filters.size ? h("p", { class: "hint" }, "No more facets for these results.") : null);
      return;
    }
    show(this.facets, h("h2", {}, "Refine"), groups.map((facet) => {
      const key = facet.DocumentAttributeKey;
      const type = facet.DocumentAttributeValueType;
      return h("fieldset", { class: "facet", dataset: { key } },
        h("legend", {}, this.facetLabel(key)),
        facet.DocumentAttributeValueCountPairs.map((pair) => {
          const value = pair.DocumentAttributeValue;
          const active = this.isActive(key, value);
          return h("button", {
            type: "button",
            class: "facet-value",
            id: `facet-${slug(key)}-${slug(valueText(value))}`,
            dataset: { key, value: valueText(value) },
            "aria-pressed": String(active),
            onclick: () => this.toggleFilter(key, type, value),
          }, h("span", {}, this.facetValueText(key, value)), h("span", { class: "count" }, formatNumber(pair.Count)));
        }));
    }));
  }

  isActive(key, value) {
    const filter = this.filters.get(key);
    return Boolean(filter && filter.values.some((v) => sameValue(v, value)));
  }

  toggleFilter(key, type, value) {
    const filter = this.filters.get(key) || { type, values: [] };
    if (filter.values.some((v) => sameValue(v, value))) {
      filter.values = filter.values.filter((v) => !sameValue(v, value));
    } else {
      filter.values.push(value);
    }
    if (filter.values.length) this.filters.set(key, filter);
    else this.filters.delete(key);
    this.requery({ resetPage: true });
  }

  showChips() {
    const chips = [];
    for (const [key, filter] of this.filters) {
      for (const value of filter.values) {
        chips.push(h("button", {
          type: "button",
          class: "chip",
          dataset: { key, value: valueText(value) },
          "aria-label": `Remove filter ${this.facetLabel(key)}: ${this.facetValueText(key, value)}`,
          onclick: () => this.toggleFilter(key, filter.type, value),
        }, `${this.facetLabel(key)}: ${this.facetValueText(key, value)}`, h("span", { "aria-hidden": "true", class: "x" }, " ×")));
      }
    }
    if (chips.length > 1) {
      chips.push(h("button", { type: "button", class: "link", id: "search-clear-filters", onclick: () => { this.filters.clear(); this.requery({ resetPage: true }); } }, "Clear all"));
    }
    show(this.chips, chips);
  }

  // Kendra's AttributeFilter: values of one attribute are alternatives, attributes all apply.
  attributeFilter() {
    const parts = [];
    for (const [key, filter] of this.filters) {
      if (filter.type === "STRING_LIST_VALUE") {
        parts.push({ ContainsAny: { Key: key, Value: { StringListValue: filter.values.map((v) => v.StringValue ?? valueText(v)) } } });
      } else {
        const equals = filter.values.map((value) => ({ EqualsTo: { Key: key, Value: value } }));
        parts.push(equals.length === 1 ? equals[0] : { OrAllFilters: equals });
      }
    }
    if (!parts.length) return null;
    return parts.length === 1 ? parts[0] : { AndAllFilters: parts };
  }

  // -- pages -----------------------------------------------------------------------------------

  showPager(total, size) {
    const pages = Math.max(1, Math.ceil(Math.min(total, 100) / size));
    if (pages <= 1 && this.pageNumber === 1) {
      show(this.pager);
      return;
    }
    const go = (n) => {
      this.pageNumber = n;
      this.search();
    };
    show(this.pager,
      h("button", { type: "button", class: "secondary", id: "search-prev", disabled: this.pageNumber <= 1, onclick: () => go(this.pageNumber - 1) }, "‹ Previous"),
      h("span", { id: "search-page-info" }, `Page ${this.pageNumber} of ${pages}`),
      h("button", { type: "button", class: "secondary", id: "search-next", disabled: this.pageNumber >= pages, onclick: () => go(this.pageNumber + 1) }, "Next ›"));
  }

  // -- suggestions -----------------------------------------------------------------------------

  scheduleSuggestions() {
    clearTimeout(this.suggestTimer);
    const text = this.input.value;
    if (!text.trim()) {
      this.hideSuggestions();
      return;
    }
    this.suggestTimer = setTimeout(() => this.loadSuggestions(text), SUGGEST_DELAY_MS);
    if (!this.cleanupRegistered) {
      this.cleanupRegistered = true;
      onLeave(() => clearTimeout(this.suggestTimer));
    }
  }

  async loadSuggestions(text) {
    const ticket = ++this.suggestTicket;
    const body = { QueryText: text.slice(0, 1000), MaxSuggestionsCount: 8, SuggestionTypes: ["QUERY", "DOCUMENT_ATTRIBUTES"] };
    const user = this.userContext();
    if (user) body.AttributeSuggestionsConfig = { UserContext: user };
    let suggestions = [];
    try {
      ({ Suggestions: suggestions = [] } = await api("POST", `/v1/indexes/${encodeURIComponent(this.index.Id)}/suggestions`, body));
    } catch {
      suggestions = []; // suggestions are a convenience: a failure shows none
    }
    if (ticket !== this.suggestTicket || this.input.value !== text || document.activeElement !== this.input) return;
    this.active = -1;
    if (!suggestions.length) {
      this.hideSuggestions();
      return;
    }
    show(this.suggestions, suggestions.map((s, i) => {
      const value = s.Value?.Text || { Text: "" };
      const li = h("li", { role: "option", id: `search-suggestion-${i}`, class: "suggestion", "aria-selected": "false", dataset: { text: value.Text } },
        highlighted(value));
      // mousedown, not click: it comes before the input's blur hides the list.
      li.addEventListener("mousedown", (event) => {
        event.preventDefault();
        this.pickSuggestion(value.Text);
      });
      return li;
    }));
    this.suggestions.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
  }

  hideSuggestions() {
    this.suggestTicket += 1;
    this.suggestions.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  pickSuggestion(text) {
    this.input.value = text;
    this.hideSuggestions();
    this.search({ resetPage: true });
  }

  suggestionKeys(event) {
    const options = [...this.suggestions.querySelectorAll("li")];
    if (this.suggestions.hidden || !options.length) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + options.length) % options.length;
      options.forEach((o, i) => o.setAttribute("aria-selected", String(i === this.active)));
      this.input.setAttribute("aria-activedescendant", options[this.active].id);
    } else if (event.key === "Enter" && this.active >= 0) {
      event.preventDefault();
      this.pickSuggestion(options[this.active].dataset.text);
    } else if (event.key === "Escape") {
      this.hideSuggestions();
    }
  }
}

// -- helpers ------------------------------------------------------------------------------------

// Element.append() would write null as "null": children are added the way h() adds them.
function put(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child);
  }
}

// Text with Kendra Highlights (offsets in code points) as text nodes and <mark> elements.
export function highlighted(withHighlights) {
  const chars = Array.from(String(withHighlights?.Text ?? ""));
  const spans = (withHighlights?.Highlights || [])
    .map((s) => ({
      begin: Math.max(0, Math.min(chars.length, Number(s.BeginOffset) || 0)),
      end: Math.max(0, Math.min(chars.length, Number(s.EndOffset) || 0)),
      top: Boolean(s.TopAnswer),
    }))
    .filter((s) => s.end > s.begin)
    .sort((a, b) => a.begin - b.begin);
  const merged = [];
  for (const span of spans) {
    const last = merged[merged.length - 1];
    if (last && span.begin <= last.end) {
      last.end = Math.max(last.end, span.end);
      last.top = last.top || span.top;
    } else {
      merged.push({ ...span });
    }
  }
  const out = [];
  let at = 0;
  for (const span of merged) {
    if (span.begin > at) out.push(chars.slice(at, span.begin).join(""));
    out.push(h("mark", { class: span.top ? "top-answer" : null }, chars.slice(span.begin, span.end).join("")));
    at = span.end;
  }
  if (at < chars.length) out.push(chars.slice(at).join(""));
  return out;
}

function valueText(value) {
  if (!value) return "";
  if ("StringValue" in value) return value.StringValue;
  if ("StringListValue" in value) return (value.StringListValue || []).join(", ");
  if ("LongValue" in value) return String(value.LongValue);
  if ("DateValue" in value) return formatTime(value.DateValue);
  return JSON.stringify(value);
}

function sameValue(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function slug(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60) || "x";
}

// Only web links become anchors: a document URI could be anything (javascript: included).
function safeHref(uri) {
  if (!uri) return null;
  try {
    const url = new URL(uri);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}
