/**
 * The request schemas the routes validate with, by the names the routes use. They are the wire
 * protocol's own zod schemas (src/shared/protocol/), so the agent's and the server's idea of a valid
 * request cannot drift; `parse` turns a failed parse into a 400 naming every bad path.
 */
export {
  admitTableRequestSchema as admitTableSchema,
  clientIdSchema,
  databaseIdSchema,
  deleteRequestSchema as deleteSchema,
  manifestRequestSchema as manifestSchema,
  parseMessage as parse,
  registerRequestSchema as registerSchema,
  resyncReportSchema,
  resyncRequestSchema,
  tableDeclarationSchema as declarationSchema,
  uploadQuerySchema as settleSchema,
} from '../shared/protocol.js';
