import NNCluster
import Testing

/// Rank discovery from the environments Slurm, Open MPI and nn's own contract give.
@Suite struct ClusterRoleTests {
    func role(_ environment: [String: String], coordinator: String? = nil, hostnames: [String] = []) throws -> ClusterRole {
        try ClusterRole.discover(environment: environment, coordinator: coordinator, hostnames: { _ in hostnames })
    }

    func refused(_ environment: [String: String], _ text: String, coordinator: String? = nil) {
        do {
            let r = try role(environment, coordinator: coordinator)
            Issue.record("accepted as \(r); expected an error mentioning \(text)")
        } catch {
            #expect("\(error)".contains(text), "\(error)")
        }
    }

    @Test func slurm() throws {
        let oneNode = try role(["SLURM_PROCID": "0", "SLURM_NTASKS": "3", "SLURM_NNODES": "1", "SLURM_JOB_ID": "4242"])
        #expect(oneNode.source == .slurm && oneNode.isCoordinator && oneNode.workers == 2)
        #expect(oneNode.bindEndpoint == "tcp://127.0.0.1:24242" && oneNode.connectEndpoint == "tcp://127.0.0.1:24242")
        let spread = try role(["SLURM_PROCID": "2", "SLURM_NTASKS": "3", "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NODELIST": "gpu[07-08]"],
                              hostnames: ["gpu07", "gpu08"])
        #expect(spread.rank == 2 && spread.connectEndpoint == "tcp://gpu07:5555" && spread.bindEndpoint == "tcp://*:5555")
        #expect(try role(["SLURM_PROCID": "1", "SLURM_NTASKS": "3", "SLURM_NNODES": "2"], coordinator: "10.0.0.9:7000").connectEndpoint == "tcp://10.0.0.9:7000")
        refused(["SLURM_PROCID": "1"], "SLURM_NTASKS is not")
        refused(["SLURM_PROCID": "1", "SLURM_NTASKS": "3", "SLURM_NNODES": "2"], "no node list")
        refused(["SLURM_PROCID": "1", "SLURM_NTASKS": "3", "SLURM_NNODES": "1", "NN_RANK": "2"], "contradicts Slurm's rank 1")
        refused(["SLURM_PROCID": "x", "SLURM_NTASKS": "3"], "SLURM_PROCID=x is not a number")
    }

    @Test func openMPI() throws {
        let local = try role(["OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_LOCAL_SIZE": "3"])
        #expect(local.source == .openMPI && local.rank == 1 && local.connectEndpoint == "tcp://127.0.0.1:5555")
        refused(["OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"], "give --coordinator HOST")
        #expect(try role(["OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4", "NN_COORDINATOR": "[fd00::1]:6000"]).connectEndpoint == "tcp://[fd00::1]:6000")
        refused(["OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_LOCAL_SIZE": "3", "NN_WORLD_SIZE": "4"], "contradicts Open MPI's 3 processes")
    }

    @Test func nnContract() throws {
        let r = try role(["NN_RANK": "0", "NN_WORLD_SIZE": "2", "NN_COORDINATOR": "host-a:6001"])
        #expect(r.source == .nn && r.isCoordinator && r.bindEndpoint == "tcp://*:6001" && r.workers == 1)
        refused(["NN_RANK": "0", "NN_WORLD_SIZE": "2"], "NN_COORDINATOR")
        refused(["NN_RANK": "3", "NN_WORLD_SIZE": "2", "NN_COORDINATOR": "a:1"], "outside the job's 0…1")
        refused(["NN_RANK": "0", "NN_WORLD_SIZE": "1", "NN_COORDINATOR": "a:1"], "has no worker")
        refused(["NN_RANK": "0", "NN_WORLD_SIZE": "2", "NN_COORDINATOR": "a:99999"], "1…65535")
        refused([:], "no rank in the environment")
    }
}
