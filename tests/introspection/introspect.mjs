// graphql-js, the reference implementation, against a running node:
// getIntrospectionQuery() (as GraphiQL, Apollo tooling, codegen and Altair
// send it), then buildClientSchema() on the answer.
//
// usage: node introspect.mjs http://127.0.0.1:PORT/graphql
// Prints one JSON line per query shape; exits non-zero on any failure.
import {
  buildClientSchema,
  getIntrospectionQuery,
  printSchema,
  validateSchema,
} from "graphql";

const url = process.argv[2];
if (!url) {
  console.error("usage: node introspect.mjs <graphql endpoint URL>");
  process.exit(2);
}

// The default shape, and every option graphql-js 16 offers turned on.
const shapes = {
  default: {},
  everything: {
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
    oneOf: true,
  },
};

let failed = false;
for (const [name, options] of Object.entries(shapes)) {
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        query: getIntrospectionQuery(options),
        operationName: "IntrospectionQuery",
      }),
    });
    const body = await res.json();
    if (res.status !== 200 || body.errors) {
      throw new Error(`HTTP ${res.status}: ${JSON.stringify(body.errors ?? body)}`);
    }
    const schema = buildClientSchema(body.data);
    const problems = validateSchema(schema);
    if (problems.length > 0) {
      throw new Error(`invalid client schema: ${problems.map(String).join("; ")}`);
    }
    console.log(
      JSON.stringify({
        shape: name,
        types: Object.keys(schema.getTypeMap()).length,
        query: schema.getQueryType()?.name ?? null,
        mutation: schema.getMutationType()?.name ?? null,
        subscription: schema.getSubscriptionType()?.name ?? null,
        sdlBytes: printSchema(schema).length,
      }),
    );
  } catch (e) {
    failed = true;
    console.error(`${name}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
