/**
 * How a failed checkout is classified: a repository or ref that does not exist is permanent
 * (`git_not_found`: the same spec fails the same way), anything else (network, server, auth
 * prompts that time out) may pass on a later attempt (`git_error`).
 */
const NOT_FOUND = [
  /repository '.*' not found/i,
  /Repository not found/i,
  /does not appear to be a git repository/i,
  /couldn't find remote ref/i,
  /The requested URL returned error: 404/i,
  /unknown revision/i,
  /invalid reference/i,
  /not a valid object name/i,
  /did not match any file\(s\) known to git/i,
  /Needed a single revision/i,
  /not our ref/i,
];

export function gitFailureCode(message: string): 'git_not_found' | 'git_error' {
  return NOT_FOUND.some((re) => re.test(message)) ? 'git_not_found' : 'git_error';
}
