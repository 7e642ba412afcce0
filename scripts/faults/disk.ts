/**
 * A small disk of the fault suite's own for the embedded default's DATA_DIR: a tmpfs mounted on a
 * temp dir, which `fill()` fills to the last page with a filler file (every write of the app then
 * fails with ENOSPC, a real full disk, not a mock) and `free()` empties again. Mounting needs root
 * (CAP_SYS_ADMIN); without it `mountSmallDisk` says why, and the fault is reported as not run.
 */
import { spawnSync } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface SmallDisk {
  /** The mount point (DATA_DIR goes below it). */
  readonly path: string
  /** Fills every free byte; resolves to how many bytes the filler took. */
  fill(): number
  /** Removes the filler: the space is free again. */
  free(): void
  unmount(): void
}

/** Mounts a tmpfs of `sizeMb`, or throws saying why it cannot be done here. */
export function mountSmallDisk(sizeMb: number): SmallDisk {
  if (process.getuid?.() !== 0) {
    throw new Error(`mounting a small disk for DATA_DIR needs root (the suite runs as uid ${process.getuid?.()})`)
  }
  const path = mkdtempSync(join(tmpdir(), 'orderflow-faults-disk-'))
  const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0755`, 'tmpfs', path], {
    encoding: 'utf8',
  })
  if (mount.status !== 0) {
    rmSync(path, { recursive: true, force: true })
    throw new Error(
      `cannot mount a ${sizeMb} MB tmpfs for DATA_DIR here: ${(mount.stderr || mount.error?.message || '').trim()}`,
    )
  }
  const filler = join(path, 'filler')
  let mounted = true
  // An interrupted run must not leave the mount behind.
  const unmountOnExit = () => {
    if (mounted) spawnSync('umount', ['-l', path])
  }
  process.on('exit', unmountOnExit)
  return {
    path,
    fill() {
      const fd = openSync(filler, 'a')
      let written = 0
      try {
        // Big writes first, then smaller ones, down to one page: tmpfs allocates whole pages.
        for (const size of [1 << 20, 1 << 16, 1 << 12]) {
          const chunk = Buffer.alloc(size)
          for (;;) {
            try {
              written += writeSync(fd, chunk)
            } catch (error) {
              if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break
              throw error
            }
          }
        }
      } finally {
        closeSync(fd)
      }
      return written
    },
    free() {
      rmSync(filler, { force: true })
    },
    unmount() {
      if (!mounted) return
      mounted = false
      process.off('exit', unmountOnExit)
      spawnSync('umount', ['-l', path])
      rmSync(path, { recursive: true, force: true })
    },
  }
}
