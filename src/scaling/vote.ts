// Vote counting and Adaptive-Consistency's stopping rule. The rule (Aggarwal et al., 2023, the Beta
// criterion in its closed form): with v1 and v2 the two largest vote counts and n = v1 + v2 + 1,
// the probability that the leader really is the majority answer is P = Σ_{k=0..v1} C(n,k) / 2^n;
// sampling stops once P reaches the confidence (0.95).

export interface Tally {
  /** Answer -> votes, in order of first appearance. */
  counts: Map<string, number>;
  /** The answer with most votes; ties go to the one that appeared first. */
  leader?: string;
  v1: number;
  v2: number;
}

export function tally(answers: readonly string[]): Tally {
  const counts = new Map<string, number>();
  for (const a of answers) counts.set(a, (counts.get(a) ?? 0) + 1);
  let leader: string | undefined;
  let v1 = 0;
  let v2 = 0;
  for (const [answer, c] of counts) {
    if (c > v1) {
      v2 = v1;
      v1 = c;
      leader = answer;
    } else if (c > v2) v2 = c;
  }
  return { counts, leader, v1, v2 };
}

/** P(leader is the majority) under a uniform Beta prior: Σ_{k=0..v1} C(n,k) / 2^n, n = v1 + v2 + 1. */
export function leaderConfidence(v1: number, v2: number): number {
  const n = v1 + v2 + 1;
  // Work in logs: n can be large for big budgets, 2^n overflows doubles past ~1000.
  let sum = 0;
  let logC = 0; // log C(n, 0)
  const log2n = n * Math.LN2;
  for (let k = 0; k <= v1; k++) {
    if (k > 0) logC += Math.log((n - k + 1) / k);
    sum += Math.exp(logC - log2n);
  }
  return Math.min(1, sum);
}

export function shouldStop(v1: number, v2: number, confidence = 0.95): boolean {
  return leaderConfidence(v1, v2) >= confidence;
}
