/**
 * The wire protocol between agent and server (README, Wire protocol): the one barrel of the code
 * base (STYLE.md). Its parts live in src/shared/protocol/:
 *  - limits.ts          named limits every request is checked against;
 *  - identifiers.ts     versions, client and database ids, in their canonical forms;
 *  - table-name.ts      table and column names (parse, format, check);
 *  - column-type.ts     the grammar of declared column types;
 *  - table-messages.ts  tenant table routes' messages (zod schemas, inferred wire types);
 *  - manifest.ts        manifest requests and answers;
 *  - idle-settle.ts     the settle an idle run carries on its declaration;
 *  - admin-messages.ts  admin routes' messages;
 *  - fleet-messages.ts  agents' run reports and the admin fleet views;
 *  - routes.ts          route templates and the path builders made from them;
 *  - copy-text.ts       the COPY text codec of row data;
 *  - parse.ts           parsing a message by its schema (400 naming each problem).
 */
export * from './protocol/admin-messages.js';
export * from './protocol/column-type.js';
export * from './protocol/copy-text.js';
export * from './protocol/fleet-messages.js';
export * from './protocol/identifiers.js';
export * from './protocol/idle-settle.js';
export * from './protocol/limits.js';
export * from './protocol/manifest.js';
export * from './protocol/parse.js';
export * from './protocol/routes.js';
export * from './protocol/table-messages.js';
export * from './protocol/table-name.js';
