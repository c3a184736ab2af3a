/**
 * The other end of a client's Unix socket, read from the kernel (SO_PEERCRED and the socket's
 * shutdown state) rather than from anything the client says.
 */
import type { Socket } from 'node:net';
import { socketPeer, type SocketPeer } from '../native';

/**
 * The peer of `socket`, or undefined when the socket has no descriptor any more (destroyed) or
 * the kernel will not say: callers then keep the behaviour they had without knowing.
 */
export function peerOf(socket: Socket): SocketPeer | undefined {
  // net.Socket keeps its descriptor on the libuv handle; there is no public accessor for it.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  try {
    return socketPeer(fd);
  } catch {
    return undefined;
  }
}
