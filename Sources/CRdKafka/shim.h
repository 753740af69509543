#ifndef SLUICE_CRDKAFKA_SHIM_H
#define SLUICE_CRDKAFKA_SHIM_H
// rdkafka_mock.h only compiles after rdkafka.h.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/// Produces one message (copied) with optional key, headers and a per-message opaque.
/// Wraps the variadic rd_kafka_producev, which Swift cannot call. On success librdkafka owns `headers`.
static inline rd_kafka_resp_err_t sluice_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                                 const void *value, size_t value_len, const void *key,
                                                 size_t key_len, rd_kafka_headers_t *headers, void *opaque) {
    if (headers != NULL) {
        return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void *)value, value_len),
                                 RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_HEADERS(headers),
                                 RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    }
    return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void *)value, value_len),
                             RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
}

/// Makes the next request of `api_key` to `broker_id` fail with `err` after `rtt_ms` (variadic in 2.0.2).
static inline rd_kafka_resp_err_t sluice_mock_broker_push_request_error_rtt(rd_kafka_mock_cluster_t *mcluster,
                                                                            int32_t broker_id, int16_t api_key,
                                                                            rd_kafka_resp_err_t err,
                                                                            int32_t rtt_ms) {
    return rd_kafka_mock_broker_push_request_error_rtts(mcluster, broker_id, api_key, 1, err, rtt_ms);
}

static inline int64_t sluice_offset_beginning(void) { return RD_KAFKA_OFFSET_BEGINNING; }
static inline int64_t sluice_offset_end(void) { return RD_KAFKA_OFFSET_END; }
static inline int64_t sluice_offset_stored(void) { return RD_KAFKA_OFFSET_STORED; }
static inline int64_t sluice_offset_invalid(void) { return RD_KAFKA_OFFSET_INVALID; }
static inline int32_t sluice_partition_any(void) { return RD_KAFKA_PARTITION_UA; }

/* Enqueues `count` messages for one topic handle (payloads copied), each partitioned by the partitioner. */
static inline int sluice_produce_batch(rd_kafka_topic_t *rkt, rd_kafka_message_t *messages, int count) {
    return rd_kafka_produce_batch(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, messages, count);
}

#endif
