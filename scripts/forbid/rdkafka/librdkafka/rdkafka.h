/* Put first on the include path of the floors that must not talk to Kafka
 * (orchestrator/core, obs, store): including librdkafka there fails the
 * build. See docs/ARCHITECTURE.md. */
#error                                                                                   \
    "this floor must not use Kafka: only orchestrator/engine, sagad and sagactl may include librdkafka (docs/ARCHITECTURE.md)"
