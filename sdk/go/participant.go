package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Handler runs one action or compensation. tx is the barrier's
// transaction (nil without a database): write the business effect on it
// and do not commit or roll it back yourself. On Fail or Retry its writes
// are rolled back. ctx is not cancelled by a graceful stop: the command in
// hand is finished and answered first.
type Handler func(ctx context.Context, tx pgx.Tx, cmd *Command) Result

// Options of a participant. Service and Brokers are required.
type Options struct {
	Brokers     []string // Kafka bootstrap servers
	Service     string   // consumes <TopicPrefix>cmd.<Service>
	TopicPrefix string   // default "saga."
	// GroupID is the consumer group; default "saga-svc-<Service>", as
	// libsaga's, so that C and Go instances of one service share the
	// commands.
	GroupID string
	// InstanceID: Kafka static group membership (unique per process).
	InstanceID string
	// DBURL is the service's PostgreSQL, where the barrier lives; or give
	// DB, a pool of your own. Without either there is no barrier:
	// duplicates run the handler again.
	DBURL string
	DB    *pgxpool.Pool
	// DBSchema is the search_path on DBURL (letters, digits, '_').
	DBSchema string
	// KeyFile holds the service's signing keys (LoadKeys); or give Keys.
	// Then every command must carry a valid signature, and replies are
	// signed.
	KeyFile string
	Keys    *Keys
	// DeadLetterTopic: where commands that cannot be handled go; default
	// "<TopicPrefix>dead.<Service>". NoDeadLetter: only log and skip them.
	DeadLetterTopic string
	NoDeadLetter    bool
	// MaxOutputBytes bounds an ok output (as jsonb prints it); 0: 262,144
	// (sagad's default); negative: only the message size bounds it.
	MaxOutputBytes int64
	// MaxRedeliveries: how many times a command whose reply the broker
	// refused for a reason that cannot heal is consumed again before it is
	// dead-lettered; 0: 3 (libsaga's default), negative: none.
	MaxRedeliveries int
	// DeliveryTimeout bounds how long one reply may take to be
	// acknowledged (default 30 s); then its command is consumed again.
	DeliveryTimeout time.Duration
	// Logger gets the participant's problems (rate-limited: 20 lines per
	// 10 s); default slog.Default().
	Logger *slog.Logger
	// KafkaOptions are appended to the franz-go client's options (TLS,
	// SASL, ...).
	KafkaOptions []kgo.Opt
}

// Stats are counters since creation, named as libsaga's.
type Stats struct {
	Received, Handled, Duplicates, NullCompensations, HangingRefused uint64
	Malformed, UnknownAction, Unauthenticated, DeadLettered          uint64
	RepliedOK, RepliedFailed, RepliedRetry, Undeliverable            uint64
	OutputTooLarge, HandlerCalls, HandlerTimeNs, LogSuppressed       uint64
}

type counters struct {
	received, handled, duplicates, nullComp, hanging           atomic.Uint64
	malformed, unknownAction, unauthenticated, deadLettered    atomic.Uint64
	repliedOK, repliedFailed, repliedRetry, undeliverable      atomic.Uint64
	outputTooLarge, handlerCalls, handlerTimeNs, logSuppressed atomic.Uint64
}

type partOff struct {
	partition int32
	offset    int64
}

type failure struct {
	count int
	why   string
}

// Participant consumes one service's commands and answers them.
type Participant struct {
	opts                           Options
	cmdTopic, replyTopic, ownReply string
	deadTopic                      string
	cl                             *kgo.Client
	pool                           *pgxpool.Pool
	ownPool                        bool
	keys                           *Keys
	handlers                       map[Phase]map[string]Handler
	maxOutput                      int64
	maxRedeliveries                int
	failed                         map[partOff]*failure
	stats                          counters
	log                            *slog.Logger
	logMu                          sync.Mutex
	logWindow                      time.Time
	logLines                       int
	logLeftOut                     uint64
	running                        atomic.Bool
	closeOnce                      sync.Once
}

const maxMessageBytes = 1000000 // librdkafka's message.max.bytes, as libsaga's producer

// NewParticipant connects to PostgreSQL (creating the barrier table if it
// is missing), creates the Kafka client and the command, dead-letter and
// reply topics if missing (4 partitions, waiting up to 10 s), and joins
// the service's consumer group once Run is called. Close it when done.
func NewParticipant(ctx context.Context, o Options) (*Participant, error) {
	if len(o.Brokers) == 0 || o.Service == "" {
		return nil, fmt.Errorf("participant options need Brokers and Service (non-empty): Brokers has %d, Service is %q",
			len(o.Brokers), o.Service)
	}
	if o.TopicPrefix == "" {
		o.TopicPrefix = "saga."
	}
	if o.GroupID == "" {
		o.GroupID = "saga-svc-" + o.Service
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	p := &Participant{
		opts:       o,
		cmdTopic:   o.TopicPrefix + "cmd." + o.Service,
		replyTopic: o.TopicPrefix + "reply",
		ownReply:   o.TopicPrefix + "reply." + o.Service,
		handlers:   map[Phase]map[string]Handler{Invoke: {}, Compensate: {}},
		failed:     map[partOff]*failure{},
		log:        o.Logger.With("service", o.Service),
		logWindow:  time.Now(),
	}
	if !TopicNameValid(p.cmdTopic) || !TopicNameValid(p.ownReply) {
		return nil, fmt.Errorf("service %q with prefix %q does not make a Kafka topic name", o.Service, o.TopicPrefix)
	}
	if !o.NoDeadLetter {
		p.deadTopic = o.DeadLetterTopic
		if p.deadTopic == "" {
			p.deadTopic = o.TopicPrefix + "dead." + o.Service
		}
		if !TopicNameValid(p.deadTopic) {
			return nil, fmt.Errorf("dead-letter topic %q is not a Kafka topic name (1 to 249 letters, digits, '.', '_', '-')",
				truncate(p.deadTopic, 60))
		}
	}
	switch {
	case o.MaxOutputBytes == 0:
		p.maxOutput = 262144
	case o.MaxOutputBytes > 0:
		p.maxOutput = o.MaxOutputBytes
	}
	switch {
	case o.MaxRedeliveries == 0:
		p.maxRedeliveries = 3
	case o.MaxRedeliveries > 0:
		p.maxRedeliveries = o.MaxRedeliveries
	}
	if o.DeliveryTimeout <= 0 {
		o.DeliveryTimeout = 30 * time.Second
	}
	p.keys = o.Keys
	if p.keys == nil && o.KeyFile != "" {
		k, err := LoadKeys(o.KeyFile)
		if err != nil {
			return nil, err
		}
		p.keys = k
	}
	if err := p.openDB(ctx); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ClientID("saga-svc-" + o.Service),
		// Replies: idempotent (franz-go's default), acks from all replicas,
		// placed as librdkafka places them.
		kgo.RecordPartitioner(LibrdkafkaPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RecordDeliveryTimeout(o.DeliveryTimeout),
		kgo.ProducerBatchMaxBytes(maxMessageBytes),
		// Commands: the service's group, from the earliest offset when the
		// group is new (a command sent before the first start is not lost).
		kgo.ConsumerGroup(o.GroupID),
		kgo.ConsumeTopics(p.cmdTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// librdkafka's assignors (range, roundrobin): franz-go's default
		// (cooperative-sticky) shares no protocol with libsaga's members,
		// and a mixed group would fail to form.
		kgo.Balancers(kgo.RangeBalancer(), kgo.RoundRobinBalancer()),
		kgo.SessionTimeout(6 * time.Second),
		kgo.HeartbeatInterval(2 * time.Second),
		kgo.FetchMaxWait(100 * time.Millisecond),
		// Offsets are marked once a batch's replies are acknowledged and
		// committed every 200 ms (as libsaga stores and commits them), and
		// on a revocation; no rebalance while a batch is in hand.
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(200 * time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) {
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				p.warn("committing offsets before a rebalance: %v (commands may be redelivered)", err)
			}
		}),
	}
	if o.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(o.InstanceID))
	}
	opts = append(opts, o.KafkaOptions...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		p.closeDB()
		return nil, fmt.Errorf("creating the Kafka client: %w", err)
	}
	p.cl = cl
	topics := []string{p.cmdTopic, p.ownReply}
	if p.deadTopic != "" {
		topics = append(topics, p.deadTopic)
	}
	if err := ensureTopics(ctx, cl, topics, 4, 10*time.Second); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Participant) openDB(ctx context.Context) error {
	o := p.opts
	if o.DB != nil {
		p.pool = o.DB
	} else if o.DBURL != "" {
		cfg, err := pgxpool.ParseConfig(o.DBURL)
		if err != nil {
			return fmt.Errorf("the PostgreSQL URL: %w", err)
		}
		if o.DBSchema != "" {
			for _, c := range o.DBSchema {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
					return fmt.Errorf("DBSchema %q: use letters, digits and '_'", o.DBSchema)
				}
			}
			cfg.ConnConfig.RuntimeParams["search_path"] = o.DBSchema
		}
		cfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("cannot connect to PostgreSQL: %w", err)
		}
		p.pool, p.ownPool = pool, true
	} else {
		return nil
	}
	if err := barrierInit(ctx, p.pool); err != nil {
		p.closeDB()
		return err
	}
	return nil
}

func (p *Participant) closeDB() {
	if p.ownPool && p.pool != nil {
		p.pool.Close()
	}
}

// ensureTopics creates the topics that are missing and waits until each
// has a leader for every partition, at most timeout.
func ensureTopics(ctx context.Context, cl *kgo.Client, topics []string, partitions int32, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	adm := kadm.NewClient(cl)
	var last error
	for {
		details, err := adm.ListTopics(ctx, topics...)
		if err == nil {
			var missing []string
			ready := true
			for _, t := range topics {
				d, ok := details[t]
				switch {
				case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
					missing = append(missing, t)
					ready = false
				case d.Err != nil:
					last, ready = fmt.Errorf("topic %s: %w", t, d.Err), false
				default:
					for _, pd := range d.Partitions {
						if pd.Leader < 0 {
							ready = false
						}
					}
					if len(d.Partitions) == 0 {
						ready = false
					}
				}
			}
			if ready {
				return nil
			}
			if len(missing) > 0 {
				res, cerr := adm.CreateTopics(ctx, partitions, -1, nil, missing...)
				if cerr != nil {
					last = fmt.Errorf("creating topics %s: %w", strings.Join(missing, ", "), cerr)
				}
				for _, r := range res {
					if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
						last = fmt.Errorf("creating topic %s: %w", r.Topic, r.Err)
					}
				}
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = errors.New("their partitions have no leader yet")
			}
			return fmt.Errorf("Kafka topics %s not ready within %s: %w", strings.Join(topics, ", "), timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// OnAction registers h for the action name (phase invoke). Call before Run.
func (p *Participant) OnAction(name string, h Handler) { p.on(Invoke, name, h) }

// OnCompensation registers h for the compensation name (phase compensate).
func (p *Participant) OnCompensation(name string, h Handler) { p.on(Compensate, name, h) }

func (p *Participant) on(phase Phase, name string, h Handler) {
	if name == "" || h == nil {
		panic("saga: a handler needs a name and a function")
	}
	if p.running.Load() {
		panic("saga: handlers are registered before Run")
	}
	if _, dup := p.handlers[phase][name]; dup {
		panic(fmt.Sprintf("saga: %s %q registered twice", phase, name))
	}
	p.handlers[phase][name] = h
}

// Stats gives the counters; safe from any goroutine.
func (p *Participant) Stats() Stats {
	s := &p.stats
	return Stats{
		Received: s.received.Load(), Handled: s.handled.Load(), Duplicates: s.duplicates.Load(),
		NullCompensations: s.nullComp.Load(), HangingRefused: s.hanging.Load(),
		Malformed: s.malformed.Load(), UnknownAction: s.unknownAction.Load(),
		Unauthenticated: s.unauthenticated.Load(), DeadLettered: s.deadLettered.Load(),
		RepliedOK: s.repliedOK.Load(), RepliedFailed: s.repliedFailed.Load(), RepliedRetry: s.repliedRetry.Load(),
		Undeliverable: s.undeliverable.Load(), OutputTooLarge: s.outputTooLarge.Load(),
		HandlerCalls: s.handlerCalls.Load(), HandlerTimeNs: s.handlerTimeNs.Load(), LogSuppressed: s.logSuppressed.Load(),
	}
}

// logf: at most 20 lines per 10 s, then one line saying how many were left out.
func (p *Participant) logf(level slog.Level, format string, args ...any) {
	p.logMu.Lock()
	now := time.Now()
	if now.Sub(p.logWindow) >= 10*time.Second {
		if p.logLeftOut > 0 {
			p.log.Warn(fmt.Sprintf("%d more problem(s) in the last 10 s not logged (rate limit; see Stats)", p.logLeftOut))
		}
		p.logWindow, p.logLines, p.logLeftOut = now, 0, 0
	}
	if p.logLines >= 20 {
		p.logLeftOut++
		p.logMu.Unlock()
		p.stats.logSuppressed.Add(1)
		return
	}
	p.logLines++
	p.logMu.Unlock()
	p.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (p *Participant) warn(format string, args ...any) { p.logf(slog.LevelWarn, format, args...) }

// Run consumes and answers commands until ctx is cancelled (then it
// finishes the batch in hand: its replies acknowledged and its offsets
// marked, and returns nil), riding out transient Kafka and database
// errors. It returns an error only for one that cannot heal (a fenced
// static member: restart the process).
func (p *Participant) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("saga: Run called twice")
	}
	work := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		fetches := p.cl.PollRecords(ctx, 200)
		if fetches.IsClientClosed() {
			return nil
		}
		var fatal error
		fetches.EachError(func(t string, part int32, err error) {
			switch {
			case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			case errors.Is(err, kerr.FencedInstanceID):
				fatal = fmt.Errorf("fatal Kafka consumer error: %w", err)
			default:
				p.warn("consumer: %s[%d]: %v", t, part, err)
			}
		})
		if fatal != nil {
			p.cl.AllowRebalance()
			return fatal
		}
		recs := fetches.Records()
		if len(recs) == 0 {
			p.cl.AllowRebalance()
			continue
		}
		err := p.handleBatch(work, recs)
		p.cl.AllowRebalance()
		if err != nil {
			p.warn("%v", err)
			select { // the broker or the database may be restarting
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

// Close commits the marked offsets, leaves the group, flushes what is
// still being produced (up to 5 s) and closes the database pool it opened.
func (p *Participant) Close() {
	p.closeOnce.Do(func() {
		if p.cl != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.cl.Flush(ctx)
			if err := p.cl.CommitMarkedOffsets(ctx); err != nil {
				p.warn("committing offsets at close: %v (commands may be redelivered)", err)
			}
			cancel()
			p.cl.Close()
		}
		p.closeDB()
	})
}

// outgoing is what one command sends: its reply or a dead letter.
type outgoing struct {
	rec  *kgo.Record
	dead bool
}

// handleBatch answers recs, waits until every reply is acknowledged, and
// only then marks the offsets. A partition whose reply failed is rewound
// to that command (the barrier answers the ones after it again).
func (p *Participant) handleBatch(ctx context.Context, recs []*kgo.Record) error {
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for i, r := range recs {
		out := p.handle(ctx, r)
		if out == nil {
			continue
		}
		wg.Add(1)
		i, dead := i, out.dead
		p.cl.Produce(ctx, out.rec, func(_ *kgo.Record, err error) {
			if err != nil && dead {
				if canHeal(err) {
					p.logf(slog.LevelError, "the command at %s[%d]@%d could not be dead-lettered to %s: %v; it will be consumed again",
						p.cmdTopic, recs[i].Partition, recs[i].Offset, p.deadTopic, err)
				} else {
					p.logf(slog.LevelError, "the command at %s[%d]@%d could not be dead-lettered to %s: %v; it is skipped",
						p.cmdTopic, recs[i].Partition, recs[i].Offset, p.deadTopic, err)
					err = nil
				}
			}
			errs[i] = err
			wg.Done()
		})
	}
	wg.Wait()
	var marks []*kgo.Record
	rewind := map[int32]int64{}
	nfailed := 0
	var first error
	for i, r := range recs {
		if _, stopped := rewind[r.Partition]; stopped {
			continue
		}
		if errs[i] == nil {
			marks = append(marks, r)
			delete(p.failed, partOff{r.Partition, r.Offset})
			continue
		}
		nfailed++
		p.stats.undeliverable.Add(1)
		rewind[r.Partition] = r.Offset
		if first == nil {
			first = errs[i]
		}
		if canHeal(errs[i]) {
			p.warn("reply for the command at %s[%d]@%d not delivered: %v; it will be consumed again",
				p.cmdTopic, r.Partition, r.Offset, errs[i])
			continue
		}
		k := partOff{r.Partition, r.Offset}
		f := p.failed[k]
		if f == nil {
			f = &failure{}
			p.failed[k] = f
		}
		f.count++
		f.why = fmt.Sprintf("its reply was refused: %v", errs[i])
		p.warn("reply for the command at %s[%d]@%d not delivered: %v (%d of %d; then it is dead-lettered)",
			p.cmdTopic, r.Partition, r.Offset, errs[i], f.count, p.maxRedeliveries+1)
	}
	if len(marks) > 0 {
		p.cl.MarkCommitRecords(marks...)
	}
	if len(rewind) > 0 {
		set := map[int32]kgo.EpochOffset{}
		for part, off := range rewind {
			set[part] = kgo.EpochOffset{Epoch: -1, Offset: off}
		}
		p.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{p.cmdTopic: set})
		return fmt.Errorf("%d replies not delivered; their commands will be consumed again: %w", nfailed, first)
	}
	return nil
}

// canHeal: a failure that sending the same message again may cure (no
// broker, a timeout); not one where the message or its topic is wrong.
func canHeal(err error) bool {
	for _, e := range []error{kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord,
		kerr.CorruptMessage, kerr.InvalidTopicException, kerr.TopicAuthorizationFailed,
		kerr.UnknownTopicOrPartition, kerr.InvalidRequiredAcks, kerr.PolicyViolation} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

func header(r *kgo.Record, name string) []byte {
	var v []byte
	for _, h := range r.Headers {
		if h.Key == name {
			v = h.Value
			if v == nil {
				v = []byte{}
			}
		}
	}
	return v
}

// handle decides what one consumed message sends.
func (p *Participant) handle(ctx context.Context, r *kgo.Record) *outgoing {
	p.stats.received.Add(1)
	if f := p.failed[partOff{r.Partition, r.Offset}]; f != nil && f.count > p.maxRedeliveries {
		delete(p.failed, partOff{r.Partition, r.Offset})
		return p.deadLetter(r, fmt.Sprintf("answered %d time(s) but %s", f.count, f.why))
	}
	if p.keys != nil {
		if err := p.keys.Verify(r.Topic, r.Key, r.Value, header(r, SignatureHeader)); err != nil {
			p.stats.unauthenticated.Add(1)
			return p.deadLetter(r, err.Error())
		}
	}
	cmd, err := DecodeCommand(r.Value)
	if err != nil {
		p.stats.malformed.Add(1)
		return p.deadLetter(r, err.Error())
	}
	if cmd.ReplyTo != p.replyTopic && cmd.ReplyTo != p.ownReply {
		p.stats.malformed.Add(1)
		return p.deadLetter(r, fmt.Sprintf("malformed: field \"reply_to\" is %q, not this deployment's reply topic (%s or %s)",
			truncate(cmd.ReplyTo, 60), p.replyTopic, p.ownReply))
	}
	if tp := header(r, "traceparent"); tp != nil {
		cmd.Traceparent = string(tp)
	}
	reply := p.answer(ctx, cmd)
	if reply == nil {
		return nil
	}
	value, err := reply.Encode()
	if err != nil { // an output that passed outputJSON: cannot happen
		p.logf(slog.LevelError, "command %s: encoding the reply: %v", cmd.CommandID, err)
		reply = Retry(time.Second, "participant %s could not encode its reply: %v", p.opts.Service, err).reply(cmd, nil)
		value, _ = reply.Encode()
	}
	switch reply.Status {
	case StatusOK:
		p.stats.repliedOK.Add(1)
	case StatusFailed:
		p.stats.repliedFailed.Add(1)
	default:
		p.stats.repliedRetry.Add(1)
	}
	p.stats.handled.Add(1)
	rec := &kgo.Record{Topic: cmd.ReplyTo, Key: []byte(cmd.SagaID), Value: value}
	if cmd.Traceparent != "" || header(r, "traceparent") != nil {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "traceparent", Value: []byte(cmd.Traceparent)})
	}
	if p.keys != nil {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: SignatureHeader,
			Value: []byte(p.keys.Sign(rec.Topic, rec.Key, rec.Value))})
	}
	return &outgoing{rec: rec}
}

// deadLetter sets r aside: to the dead-letter topic with why, as it came
// (its first message.max.bytes - 16 KiB if larger), same key, with the
// saga-dead-* headers; or, with none, only logged.
func (p *Participant) deadLetter(r *kgo.Record, why string) *outgoing {
	p.stats.deadLettered.Add(1)
	if p.deadTopic == "" {
		p.warn("the command at %s[%d]@%d was skipped (no dead-letter topic): %s", p.cmdTopic, r.Partition, r.Offset, why)
		return nil
	}
	value := r.Value
	hdrs := []kgo.RecordHeader{
		{Key: "saga-dead-reason", Value: []byte(why)},
		{Key: "saga-dead-topic", Value: []byte(p.cmdTopic)},
		{Key: "saga-dead-partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		{Key: "saga-dead-offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		{Key: "saga-dead-service", Value: []byte(p.opts.Service)},
	}
	if room := maxMessageBytes - 16384; len(value) > room {
		hdrs = append(hdrs, kgo.RecordHeader{Key: "saga-dead-bytes", Value: []byte(strconv.Itoa(len(value)))})
		value = value[:room]
	}
	p.warn("the command at %s[%d]@%d was dead-lettered to %s: %s", p.cmdTopic, r.Partition, r.Offset, p.deadTopic, why)
	return &outgoing{rec: &kgo.Record{Topic: p.deadTopic, Key: r.Key, Value: value, Headers: hdrs}, dead: true}
}

// answer runs the barrier and the handler and gives the reply to send.
func (p *Participant) answer(ctx context.Context, cmd *Command) *Reply {
	h := p.handlers[cmd.Phase][cmd.Action]
	if h == nil {
		p.stats.unknownAction.Add(1)
		kind := "action"
		if cmd.Phase == Compensate {
			kind = "compensation"
		}
		return Fail("unknown_action", "service %s has no handler for %s %s", p.opts.Service, kind, cmd.Action).reply(cmd, nil)
	}
	if p.pool == nil {
		res := p.call(ctx, h, nil, cmd)
		out, res := p.checkOutput(cmd, res)
		return res.reply(cmd, out)
	}
	rep, err := p.withBarrier(ctx, h, cmd)
	if err != nil {
		p.warn("command %s: %v", cmd.CommandID, err)
		return Retry(time.Second, "participant %s database error: %v", p.opts.Service, err).reply(cmd, nil)
	}
	return rep
}

// call runs the handler, timed; a panic is answered retry (rolled back).
func (p *Participant) call(ctx context.Context, h Handler, tx pgx.Tx, cmd *Command) (res Result) {
	start := time.Now()
	defer func() {
		p.stats.handlerTimeNs.Add(uint64(time.Since(start)))
		p.stats.handlerCalls.Add(1)
		if v := recover(); v != nil {
			p.logf(slog.LevelError, "command %s: the handler for %s panicked: %v", cmd.CommandID, cmd.Action, v)
			res = Retry(time.Second, "handler for %s panicked: %v", cmd.Action, v)
		}
	}()
	res = h(ctx, tx, cmd)
	if res.status == "" {
		res = Retry(0, "handler for %s set no result", cmd.Action)
	}
	return res
}

// checkOutput turns an ok whose output is not an object, or is over the
// limit, into a definite failure.
func (p *Participant) checkOutput(cmd *Command, res Result) (json.RawMessage, Result) {
	if res.status != StatusOK {
		return nil, res
	}
	out, err := res.outputJSON()
	if err != nil {
		p.warn("command %s: %v; answered failed with invalid_output", cmd.CommandID, err)
		return nil, Fail("invalid_output", "handler for %s: %v", cmd.Action, err)
	}
	limit := p.maxOutput
	if ceiling := int64(maxMessageBytes - 16384); limit <= 0 || limit > ceiling {
		limit = ceiling
	}
	if n := int64(measuredSize(out)); n > limit {
		p.stats.outputTooLarge.Add(1)
		p.warn("command %s: the output of %d bytes is over the limit of %d bytes; answered failed with message_too_large",
			cmd.CommandID, n, limit)
		return nil, Fail("message_too_large", "the output of %d bytes is over the limit of %d bytes (max_output_bytes)", n, limit)
	}
	return out, res
}

// withBarrier: BEGIN; the barrier's verdict; the handler in a savepoint
// (its pgx.Tx: a failed result is rolled back to it, and a handler's own
// Commit or Rollback cannot end the barrier's transaction); the command's
// row written once, with the reply; COMMIT. A duplicate gets the recorded
// reply (with its own attempt); retry leaves no trace. When another
// delivery (or, for an action, its compensation) wrote the row while the
// handler ran, this run's writes are rolled back and the stored answer is
// given.
func (p *Participant) withBarrier(ctx context.Context, h Handler, cmd *Command) (*Reply, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it does nothing
	v, cached, err := barrierEnter(ctx, tx, cmd)
	if err != nil {
		return nil, err
	}
	var res Result
	var out json.RawMessage
	outcome := outcomeHandled
	switch v {
	case duplicate, hanging:
		return p.settled(cmd, v, cached)
	case nullComp:
		p.stats.nullComp.Add(1)
		res, out, outcome = OK(nil), json.RawMessage(`{"null_compensation":true}`), outcomeNullComp
	case proceed:
		sp, err := tx.Begin(ctx) // SAVEPOINT: the handler's transaction
		if err != nil {
			return nil, err
		}
		res = p.call(ctx, h, sp, cmd)
		if res.status == StatusRetry {
			return res.reply(cmd, nil), nil // rolled back by the deferred Rollback
		}
		out, res = p.checkOutput(cmd, res)
		if res.status == StatusOK {
			if err := sp.Commit(ctx); err != nil {
				return Retry(0, "handler for %s reported ok but its transaction failed: %v", cmd.Action, err).reply(cmd, nil), nil
			}
		} else if err := sp.Rollback(ctx); err != nil { // its writes; its answer is recorded
			return nil, err
		}
	}
	rep := res.reply(cmd, out)
	value, err := rep.Encode()
	if err != nil {
		return nil, err
	}
	if v, cached, err = barrierRecord(ctx, tx, cmd, value, outcome); err != nil {
		return nil, err
	}
	if v != proceed {
		// Seen while the handler ran: nothing of this run stays (the
		// deferred Rollback), and the stored answer is given.
		return p.settled(cmd, v, cached)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return rep, nil
}

// settled answers a command whose barrier row another delivery wrote: with
// the recorded reply (duplicate) or hanging_action (hanging).
func (p *Participant) settled(cmd *Command, v verdict, cached *string) (*Reply, error) {
	if v == hanging {
		p.stats.hanging.Add(1)
		which := fmt.Sprintf("step %d", cmd.Step)
		if cmd.IsElement() {
			which += fmt.Sprintf(" element %d", cmd.Element)
		}
		return Fail("hanging_action", "%s of saga %s was already compensated; action refused",
			which, cmd.SagaID).reply(cmd, nil), nil
	}
	if cached == nil {
		// A row without a reply: not written by this barrier. Ask again
		// later rather than answer with what was just undone.
		return Retry(time.Second, "the barrier row of %s holds no reply", cmd.CommandID).reply(cmd, nil), nil
	}
	p.stats.duplicates.Add(1)
	rep, err := DecodeReply([]byte(*cached))
	if err != nil {
		return nil, fmt.Errorf("the barrier's reply for %s: %w", cmd.CommandID, err)
	}
	rep.Attempt = cmd.Attempt // replies carry the attempt they answer
	// The row is this element's: its reply has the command's version and
	// element already (a row of version 1 aside).
	rep.V, rep.Element = ProtocolVersion, 0
	if cmd.IsElement() {
		rep.V, rep.Element = ProtocolVersionElements, cmd.Element
	}
	return rep, nil
}
