import Testing

@testable import SluiceTrain

@Suite("thread team")
struct ThreadTeamTests {
    @Test func aTeamDroppedAtOnceStopsCleanly() {
        // A worker may start only after its team began to deinit; that must not trap.
        for _ in 0..<200 { _ = ThreadTeam(size: 2) }
    }

    @Test func everyMemberRunsItsShare() {
        let team = ThreadTeam(size: 3)
        var covered = [Int](repeating: 0, count: 100)
        covered.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let out = buffer
            team.run { member in for i in team.share(of: 100, member: member) { out[i] += 1 } }
        }
        #expect(covered.allSatisfy { $0 == 1 })
    }
}
