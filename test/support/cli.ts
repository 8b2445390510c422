/** The `tether` CLI as a real child process (the project's Node 24 running its TypeScript entry point). */
import { spawn } from 'node:child_process';
import { nodeArgs } from './control-plane.ts';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv, stdin?: string, cwd?: string): Promise<CliResult> {
  const [cmd, argv] = nodeArgs('control-plane/cli/main.ts', args);
  return new Promise((resolve) => {
    const p = spawn(cmd, argv, { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(stdin ?? '');
  });
}
