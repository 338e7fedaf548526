// GraphiQL against this server only: queries and mutations POST to
// /graphql, subscriptions use the same /graphql over a WebSocket
// (graphql-transport-ws). A token pasted in the Headers tab as
// {"Authorization": "Bearer ..."} is sent with both. `?query=...` opens
// with that document (links to a query; never put a token in a URL).
(function () {
  "use strict";
  var here = window.location;
  var url = here.origin + "/graphql";
  var socket = (here.protocol === "https:" ? "wss://" : "ws://") + here.host + "/graphql";
  var fetcher = GraphiQL.createFetcher({
    url: url,
    subscriptionUrl: socket,
    fetch: function (input, init) {
      return window.fetch(input, Object.assign({}, init, { credentials: "same-origin" }));
    },
  });
  var query = new URLSearchParams(here.search).get("query");
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      query: query === null ? undefined : query,
      defaultEditorToolsVisibility: true,
    })
  );
})();
