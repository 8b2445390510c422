/**
 * The migrations are written once, with Kysely's schema builder (and a few portable raw
 * statements: partial indexes, an INSERT … SELECT). On SQLite they run as written, so existing
 * databases migrate exactly as before. On PostgreSQL they run through this plugin, which changes
 * only two column types:
 * - `integer` becomes `bigint`: the epoch-millisecond timestamps overflow PostgreSQL's 4-byte
 *   integer (SQLite's integer is 8 bytes); counters and ids are bigint too, one rule for all. The
 *   pool parses bigint (int8) back to a JavaScript number (postgres.ts), as SQLite returns them.
 * - an `integer primary key autoincrement` becomes `bigserial primary key` (PostgreSQL has no
 *   AUTOINCREMENT; both hand out increasing ids that are never reused).
 * Booleans stay integers 0/1 and JSON stays text on both, so rows read the same on either.
 */
import {
  type ColumnDefinitionNode,
  DataTypeNode,
  OperationNodeTransformer,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';

class PostgresSchemaTransformer extends OperationNodeTransformer {
  protected override transformDataType(node: DataTypeNode): DataTypeNode {
    return node.dataType === 'integer' ? DataTypeNode.create('bigint') : node;
  }

  protected override transformColumnDefinition(node: ColumnDefinitionNode): ColumnDefinitionNode {
    const n = super.transformColumnDefinition(node);
    if (!n.autoIncrement) return n;
    return Object.freeze({ ...n, autoIncrement: false, dataType: DataTypeNode.create('bigserial') });
  }
}

export const postgresSchema: KyselyPlugin = {
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return new PostgresSchemaTransformer().transformNode(args.node);
  },
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  },
};
