package saga

import (
	"hash/crc32"
	"math/rand/v2"

	"github.com/twmb/franz-go/pkg/kgo"
)

// PartitionFor gives the partition librdkafka's default partitioner
// (consistent_random) puts a keyed message on: CRC-32 (IEEE, as zlib's
// crc32) of the key, modulo the partition count. sagad and libsaga produce
// with librdkafka; a Go producer must agree, or the replies of a Go and a C
// instance of one service for one saga land on different partitions of the
// reply topic and lose their order. franz-go's default hashes with murmur2
// (the Java client's), which does not agree.
func PartitionFor(key []byte, partitions int) int {
	return int(crc32.ChecksumIEEE(key) % uint32(partitions))
}

// LibrdkafkaPartitioner is a franz-go partitioner that places keyed records
// as librdkafka's consistent_random does (PartitionFor) and records without
// a key (or with an empty one) on a random partition, as it does too.
func LibrdkafkaPartitioner() kgo.Partitioner { return crcPartitioner{} }

type crcPartitioner struct{}

func (crcPartitioner) ForTopic(string) kgo.TopicPartitioner { return crcTopicPartitioner{} }

type crcTopicPartitioner struct{}

func (crcTopicPartitioner) RequiresConsistency(r *kgo.Record) bool { return len(r.Key) > 0 }

func (crcTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if len(r.Key) == 0 {
		return rand.IntN(n)
	}
	return PartitionFor(r.Key, n)
}
