// A virtualised list of one-line event rows: only the rows in view (and a few around them) are in
// the DOM, so a stream of 20,000 events is a few dozen elements. A row expands in place on click
// (its measured height is kept); a filter hides rows without losing them; when the view is at the
// bottom it stays there as rows arrive (following the tail).

const OVERSCAN = 8;

export class RowList {
  /**
   * @param viewport the scrolling element
   * @param opts.rowHeight px of a collapsed row (as style.css draws it)
   * @param opts.max rows kept; the oldest go first
   * @param opts.row (item) => [seq, type, time, preview] texts of the collapsed line
   * @param opts.detail (item, element) => fills the expanded part
   */
  constructor(viewport, opts) {
    this.viewport = viewport;
    this.opts = opts;
    this.items = [];
    this.dropped = 0;
    this.filter = undefined;
    this.expanded = new Set();
    this.heights = new Map();
    this.spacer = document.createElement("div");
    this.spacer.className = "spacer";
    viewport.replaceChildren(this.spacer);
    this.shown = [];
    this.tops = [0];
    this.dirty = true;
    this.pending = false;
    this.follow = true;
    viewport.addEventListener("scroll", () => {
      this.follow = viewport.scrollTop + viewport.clientHeight >= viewport.scrollHeight - 4;
      this.schedule();
    });
  }

  clear() {
    this.items = [];
    this.dropped = 0;
    this.expanded.clear();
    this.heights.clear();
    this.follow = true;
    this.viewport.scrollTop = 0;
    this.changed();
  }

  push(items) {
    this.items.push(...items);
    const over = this.items.length - this.opts.max;
    if (over > 0) {
      for (const it of this.items.splice(0, over)) {
        this.expanded.delete(it.key);
        this.heights.delete(it.key);
      }
      this.dropped += over;
    }
    this.changed();
  }

  setFilter(fn) {
    this.filter = fn;
    this.changed();
  }

  /** Rows passing the filter, and all rows. */
  counts() {
    this.#layout();
    return { shown: this.shown.length, total: this.items.length };
  }

  toggle(key) {
    if (this.expanded.has(key)) {
      this.expanded.delete(key);
      this.heights.delete(key);
    } else this.expanded.add(key);
    this.changed();
  }

  changed() {
    this.dirty = true;
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  #layout() {
    if (!this.dirty) return;
    this.dirty = false;
    this.shown = this.filter ? this.items.filter(this.filter) : this.items;
    const h = this.opts.rowHeight;
    const tops = new Array(this.shown.length + 1);
    tops[0] = 0;
    for (let i = 0; i < this.shown.length; i++) tops[i + 1] = tops[i] + (this.heights.get(this.shown[i].key) ?? h);
    this.tops = tops;
  }

  /** The first row whose bottom is below `y`. */
  #indexAt(y) {
    let lo = 0;
    let hi = this.shown.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.tops[mid + 1] <= y) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  render() {
    const wasFollowing = this.follow;
    this.#layout();
    const total = this.tops[this.shown.length];
    this.spacer.style.height = `${total}px`;
    if (wasFollowing) this.viewport.scrollTop = total;
    const top = this.viewport.scrollTop;
    const first = Math.max(0, this.#indexAt(top) - OVERSCAN);
    const last = Math.min(this.shown.length, this.#indexAt(top + this.viewport.clientHeight) + OVERSCAN + 1);
    const els = [];
    for (let i = first; i < last; i++) els.push(this.#row(this.shown[i], this.tops[i]));
    this.spacer.replaceChildren(...els);
    // Expanded rows: keep their real height; a change moves the rows below, so lay out again.
    let moved = false;
    for (const el of els) {
      if (!el.classList.contains("expanded")) continue;
      const h = el.offsetHeight;
      if (this.heights.get(el.dataset.key) !== h) {
        this.heights.set(el.dataset.key, h);
        moved = true;
      }
    }
    if (moved) this.changed();
    this.follow = wasFollowing;
    this.opts.rendered?.();
  }

  #row(item, top) {
    const el = document.createElement("div");
    el.className = "row";
    el.dataset.key = item.key;
    el.style.top = `${top}px`;
    const line = document.createElement("div");
    line.className = "line";
    const [seq, type, time, preview] = this.opts.row(item);
    for (const [cls, text] of [["seq", seq], ["type", type], ["time", time], ["preview", preview]]) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      if (cls !== "preview") span.title = text;
      line.append(span);
    }
    line.addEventListener("click", () => this.toggle(item.key));
    el.append(line);
    if (this.expanded.has(item.key)) {
      el.classList.add("expanded");
      const detail = document.createElement("div");
      detail.className = "detail";
      this.opts.detail(item, detail);
      el.append(detail);
    }
    return el;
  }
}
