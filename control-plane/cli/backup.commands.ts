/**
 * CLI commands on a control plane's data folder (local, no API): `backup` and `restore`. The work
 * is in ../backup/backup.ts, imported when one of them runs.
 */
import type { Command } from 'commander';

export interface BackupCliHelpers {
  out(s: string): void;
  usage(message: string): Error;
  /** The project's root: the backup code (SQLite, a native module) is loaded from the sources, never bundled into the CLI. */
  root: URL;
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

/** A control plane on PostgreSQL keeps its data in the database: backups are PostgreSQL's own. */
function refusePostgres(h: BackupCliHelpers, o: { database?: string }, verb: 'backup' | 'restore'): void {
  if (!o.database && !process.env.TETHER_DATABASE_URL) return;
  const tool = verb === 'backup' ? 'pg_dump (or your provider\'s snapshots)' : 'pg_restore or psql';
  throw h.usage(
    `tether ${verb} copies a SQLite data folder; this control plane is on PostgreSQL (--database / TETHER_DATABASE_URL): ${verb} the database with ${tool}, and the data folder's files (ca.crt, ca.key, server.key, admin-token, tls-ticket-keys) with any file copy`,
  );
}

export function registerBackupCommands(program: Command, h: BackupCliHelpers): void {
  program
    .command('backup')
    .description("one file (tar.gz, 0600) that restores the whole control plane: a consistent copy of the database taken while the server serves, the CA, certificates and admin token")
    .requiredOption('--data-dir <dir>', "the control plane's data folder")
    .requiredOption('--to <file>', 'the backup file to write (replaced atomically)')
    .option('--database <url>', 'refused: a control plane on PostgreSQL is backed up with pg_dump (so is TETHER_DATABASE_URL)')
    .action(async (o: { dataDir: string; to: string; database?: string }) => {
      refusePostgres(h, o, 'backup');
      process.umask(0o077);
      const { backupDataDir } = (await import(new URL('control-plane/backup/backup.ts', h.root).href)) as typeof import('../backup/backup.ts');
      const r = await backupDataDir(o.dataDir, o.to);
      h.out(`${r.file}\t${mib(r.bytes)}\t${r.database.commands} commands, ${r.database.agents} agents\t${r.files.join(' ')}`);
    });

  program
    .command('restore')
    .description('brings a backup back into a data folder (refused while a server runs on it)')
    .requiredOption('--from <file>', 'a file written by `tether backup`')
    .requiredOption('--data-dir <dir>', 'the data folder to restore into (created if absent)')
    .option('--force', 'replace what a non-empty data folder holds')
    .option('--database <url>', 'refused: a control plane on PostgreSQL is restored with pg_restore or psql (so is TETHER_DATABASE_URL)')
    .action(async (o: { from: string; dataDir: string; force?: boolean; database?: string }) => {
      refusePostgres(h, o, 'restore');
      process.umask(0o077);
      const { restoreDataDir } = (await import(new URL('control-plane/backup/backup.ts', h.root).href)) as typeof import('../backup/backup.ts');
      const r = await restoreDataDir(o.from, o.dataDir, { force: o.force === true });
      h.out(`${r.dataDir}\trestored the backup of ${r.createdAt} (${r.host})\t${r.database.commands} commands, ${r.database.agents} agents\t${r.files.join(' ')}`);
      if (r.replaced.length) process.stderr.write(`tether: replaced what ${r.dataDir} held: ${r.replaced.join(', ')}\n`);
    });
}
