// Optional search: filters paper titles from the prebuilt index (search-index.js). The archive
// works without it; the search form stays hidden when scripts are off.
(function () {
  "use strict";
  var form = document.getElementById("search");
  var input = document.getElementById("search-input");
  var results = document.getElementById("search-results");
  var index = window.PAPERDIGEST_SEARCH;
  if (!form || !input || !results || !Array.isArray(index)) {
    return;
  }
  form.hidden = false;
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  input.addEventListener("input", function () {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    results.textContent = "";
    if (!words.length) {
      return;
    }
    var shown = 0;
    for (var i = 0; i < index.length && shown < 50; i++) {
      var title = index[i][0].toLowerCase();
      if (words.every(function (w) { return title.indexOf(w) !== -1; })) {
        var item = document.createElement("li");
        var link = document.createElement("a");
        link.href = index[i][1];
        link.textContent = index[i][0];  // text, never markup
        item.appendChild(link);
        item.appendChild(document.createTextNode(" · " + index[i][2]));
        results.appendChild(item);
        shown++;
      }
    }
  });
})();
