import { murmur2 } from '@platformatic/kafka'

/**
 * Kafka's Java-compatible default partitioner (murmur2 of the key, sign bit cleared, modulo the
 * partition count): the embedded log and the Kafka adapter put a key in the partition a Java or
 * librdkafka (murmur2_random) producer would.
 */
export function partitionForKey(key: string, partitions: number): number {
  return (murmur2(Buffer.from(key)) & 0x7fffffff) % partitions
}
