import NNCommands

@main
enum Entry {
    static func main() async { await WorkerCommand.main(nil) }
}
