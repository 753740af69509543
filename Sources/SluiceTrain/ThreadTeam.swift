internal import Foundation
internal import Synchronization

/// A fixed team of threads (the caller plus `size − 1` workers) that runs one piece of work on every member and
/// returns when all are done. Workers spin briefly for the next piece, then sleep on a condition variable, so an
/// idle team costs nothing. With a team, OpenBLAS runs single-threaded inside each member: one thread pool, never
/// two competing for the same cores.
final class ThreadTeam: @unchecked Sendable {
    // @unchecked: `work` is published by the generation counter (release/acquire) and read only while a run lasts.
    let size: Int
    private let generation = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private nonisolated(unsafe) var work: ((Int) -> Void)?
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var threads: [pthread_t] = []
    /// Spin iterations before a worker sleeps (tens of microseconds).
    private let spins = 20_000

    init(size: Int) {
        self.size = max(1, size)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        for index in 1..<self.size {
            let box = Unmanaged.passRetained(WorkerStart(team: self, index: index))
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { raw in
                let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                start.team.workerLoop(start.index)
                return nil
            }, box.toOpaque())
            precondition(created == 0, "cannot start a training thread")
            threads.append(thread)
        }
    }

    deinit {
        stopping.store(true, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(&mutex)
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
        for thread in threads { pthread_join(thread, nil) }
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    private final class WorkerStart {
        // unowned(unsafe): a worker may first read this while the team is already in deinit (a team made and
        // dropped at once); the memory stays valid until deinit has joined every worker, but a checked unowned
        // read of an object in deinit traps.
        unowned(unsafe) let team: ThreadTeam
        let index: Int
        init(team: ThreadTeam, index: Int) {
            self.team = team
            self.index = index
        }
    }

    /// Runs `body(member)` for every member `0..<size` at once (member 0 on the calling thread).
    func run(_ body: (Int) -> Void) {
        guard size > 1 else { return body(0) }
        withoutActuallyEscaping(body) { body in
            work = body
            finished.store(0, ordering: .relaxed)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(&mutex)
                pthread_cond_broadcast(&condition)
                pthread_mutex_unlock(&mutex)
            }
            body(0)
            while finished.load(ordering: .acquiring) < size - 1 {}
            work = nil
        }
    }

    private func workerLoop(_ index: Int) {
        var seen = 0
        while true {
            var current = generation.load(ordering: .acquiring)
            var spun = 0
            while current == seen && spun < spins {
                spun += 1
                current = generation.load(ordering: .acquiring)
            }
            if current == seen {
                pthread_mutex_lock(&mutex)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while generation.load(ordering: .sequentiallyConsistent) == seen { pthread_cond_wait(&condition, &mutex) }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(&mutex)
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            if stopping.load(ordering: .acquiring) { return }
            work?(index)
            finished.add(1, ordering: .releasing)
        }
    }

    /// Member `member`'s share of `0..<count`, in contiguous chunks.
    @inline(__always)
    func share(of count: Int, member: Int) -> Range<Int> {
        let lower = count * member / size, upper = count * (member + 1) / size
        return lower..<upper
    }
}
