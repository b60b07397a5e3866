"use strict";
// The dataset review page: filter the clip table by status or rejection reason, search it, sort it by any
// column (click a heading; again to reverse). Everything is in the page: it works offline.
(function () {
  const table = document.getElementById("clips");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const filter = document.getElementById("filter");
  const search = document.getElementById("search");
  const shown = document.getElementById("shown");

  function matches(row) {
    const want = filter.value;
    if (want === "kept" || want === "rejected") {
      if (row.dataset.status !== want) return false;
    } else if (want.startsWith("split:")) {
      if (row.dataset.split !== want.slice(6)) return false;
    } else if (want.startsWith("reason:")) {
      if (!row.dataset.reasons.split(" ").includes(want.slice(7))) return false;
    }
    const text = search.value.trim().toLowerCase();
    return !text || row.textContent.toLowerCase().includes(text);
  }

  function apply() {
    let count = 0;
    for (const row of rows) {
      const ok = matches(row);
      row.hidden = !ok;
      if (ok) count += 1;
    }
    shown.textContent = `${count} of ${rows.length} clips`;
  }

  function value(row, index, numeric) {
    const cell = row.cells[index];
    if (!numeric) return cell.textContent.trim().toLowerCase();
    const v = cell.dataset.v;
    return v === undefined || v === "" ? null : Number(v);
  }

  for (const th of table.tHead.rows[0].cells) {
    if (!th.dataset.sort) continue;
    th.tabIndex = 0;
    const sort = () => {
      const index = th.cellIndex, numeric = th.dataset.sort === "num";
      const descending = th.getAttribute("aria-sort") !== "descending";
      for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      const sign = descending ? -1 : 1;
      rows.sort((a, b) => {
        const x = value(a, index, numeric), y = value(b, index, numeric);
        if (x === y) return 0;
        if (x === null) return 1; // clips without the score go last either way
        if (y === null) return -1;
        return x < y ? -sign : sign;
      });
      for (const row of rows) body.appendChild(row);
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (event) => { if (event.key === "Enter") sort(); });
  }
  filter.addEventListener("change", apply);
  search.addEventListener("input", apply);
  apply();
})();
