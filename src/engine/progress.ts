import type { Job, SnapshotProgress } from './types';

/** Progress of a running snapshot job as a snapshot shows it: percent and average rate since start. */
export function snapshotProgress(job: Job, nowMs: number = Date.now()): SnapshotProgress {
  const seconds = Math.max(0.001, (nowMs - Date.parse(job.startedAt)) / 1000);
  const percent = job.totalBytes > 0 ? Math.floor((1000 * Math.min(job.doneBytes, job.totalBytes)) / job.totalBytes) / 10 : 0;
  return { doneBytes: job.doneBytes, totalBytes: job.totalBytes, percent, bytesPerSecond: Math.round(job.doneBytes / seconds) };
}
